#include "vmm/machine/control_socket.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/util/error.hpp"
#include "vmm/security/seccomp_filter.hpp"

namespace vmm {

namespace {

// Responses a client doesn't read pile up to this much before it is disconnected.
constexpr size_t kMaxPendingResponseBytes = size_t{1} << 20;
constexpr size_t kMaxClients = 64;

sockaddr_un socket_address(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    fail("--api-socket {}: must be 1 to {} bytes long", path, sizeof(address.sun_path) - 1);
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

// A socket file that nobody listens on any more (its server died) may be replaced; a live one,
// or anything else than a socket, may not.
void remove_stale_socket(const std::string& path, const sockaddr_un& address) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) fail("--api-socket {}: exists and is not a socket", path);
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) throw_errno("socket(AF_UNIX)");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) {
    fail("--api-socket {}: in use", path);
  }
  if (errno != ECONNREFUSED) throw_errno("--api-socket " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno("--api-socket " + path);
  spdlog::debug("--api-socket {}: replaced a stale socket", path);
}

}  // namespace

bool ControlSession::receive(std::string_view bytes) {
  if (framer_.overflowed()) return false;
  const bool within_bound = framer_.feed(bytes, [this](std::string_view line) {
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;  // blank line
    output_ += handle_control_request(line, target_);
    output_ += '\n';
  });
  if (!within_bound) {
    output_ += oversized_request_response();
    output_ += '\n';
  }
  return within_bound;
}

ControlServer::ControlServer(std::string path, ControlTarget& target)
    : path_(std::move(path)), target_(target) {
  const sockaddr_un address = socket_address(path_);
  remove_stale_socket(path_, address);
  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener_) throw_errno("socket(AF_UNIX)");
  if (::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    throw_errno("--api-socket " + path_);
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    device_ = st.st_dev;
    inode_ = st.st_ino;
  }
  if (::listen(listener_.get(), 16) != 0) {
    ::unlink(path_.c_str());
    throw_errno("--api-socket " + path_);
  }
  loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { accept_clients(); });
  thread_ = std::thread([this] {
    ::pthread_setname_np(::pthread_self(), "vmm-api");
    try {
      if (target_.config().seccomp) {
        security::confine_thread(security::ThreadKind::kControlSocket);
      }
      loop_.run();
    } catch (const std::exception& e) {
      spdlog::error("--api-socket {}: {}", path_, e.what());
    }
  });
  spdlog::debug("control API on {}", path_);
}

ControlServer::~ControlServer() {
  loop_.stop();
  thread_.join();
  for (auto& [fd, client] : clients_) loop_.remove(fd);
  clients_.clear();
  loop_.remove(listener_.get());
  // Only our own socket file: a later server may have replaced it after a rename or unlink.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

void ControlServer::accept_clients() {
  while (true) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN) spdlog::warn("--api-socket {}: accept: {}", path_, std::strerror(errno));
      return;
    }
    if (clients_.size() >= kMaxClients) {
      spdlog::warn("--api-socket {}: more than {} clients, refusing one", path_, kMaxClients);
      continue;
    }
    const int raw = fd.get();
    loop_.add(raw, EPOLLIN, [this, raw](uint32_t events) { on_client(raw, events); });
    clients_.emplace(raw, Client{std::move(fd), ControlSession(target_)});
  }
}

void ControlServer::on_client(int fd, uint32_t events) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  Client& client = it->second;
  if ((events & EPOLLOUT) != 0 && !flush(client)) {
    disconnect(fd);
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
    std::array<char, 4096> buffer{};
    while (true) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {  // the client hung up (or failed): answer what is pending, then let it go
        flush(client);
        disconnect(fd);
        return;
      }
      const bool keep = client.session.receive({buffer.data(), static_cast<size_t>(n)});
      if (!flush(client) || !keep) {
        disconnect(fd);
        return;
      }
    }
  }
  loop_.modify(fd, client.session.output().empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
}

bool ControlServer::flush(Client& client) {
  std::string& out = client.session.output();
  while (!out.empty()) {
    const ssize_t n = ::send(client.fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) return false;
    out.erase(0, static_cast<size_t>(n));
  }
  return out.size() <= kMaxPendingResponseBytes;
}

void ControlServer::disconnect(int fd) {
  loop_.remove(fd);
  clients_.erase(fd);
}

}  // namespace vmm
