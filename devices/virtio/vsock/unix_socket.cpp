#include "devices/virtio/vsock/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "base/util/error.hpp"

namespace vmm::devices::virtio::vsock {

namespace {

constexpr int kBacklog = 64;

std::optional<sockaddr_un> address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) return std::nullopt;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

UniqueFd stream_socket() {
  return UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
}

int connect_to(int fd, const sockaddr_un& addr) {
  int result;
  do {
    result = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (result != 0 && errno == EINTR);
  return result;
}

}  // namespace

UniqueFd listen_unix(const std::string& path) {
  const auto addr = address(path);
  if (!addr) fail("{}: not a usable Unix socket path (empty or too long)", path);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) fail("{}: exists and is not a socket", path);
    // A socket file someone still accepts on belongs to a running program; one that refuses
    // connections was left behind by a program that died.
    UniqueFd probe = stream_socket();
    if (!probe) throw_errno(path);
    if (connect_to(probe.get(), *addr) == 0 || errno == EAGAIN) fail("{}: in use", path);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(path);
  } else if (errno != ENOENT) {
    throw_errno(path);
  }

  UniqueFd fd = stream_socket();
  if (!fd) throw_errno(path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    throw_errno(path);
  }
  if (::listen(fd.get(), kBacklog) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw Error(errno_message(path, err));
  }
  return fd;
}

UniqueFd connect_unix(const std::string& path) {
  const auto addr = address(path);
  if (!addr) {
    errno = ENAMETOOLONG;
    return UniqueFd();
  }
  UniqueFd fd = stream_socket();
  if (!fd) return fd;
  if (connect_to(fd.get(), *addr) != 0) {
    const int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

}  // namespace vmm::devices::virtio::vsock
