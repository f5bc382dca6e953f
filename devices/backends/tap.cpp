#include "devices/backends/tap.hpp"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>

#include "base/util/error.hpp"

namespace vmm::devices {
namespace {

// sizeof(virtio_net_hdr_v1): the legacy 10-byte header plus num_buffers.
constexpr int kVnetHdrSize = 12;

// The kernel's dev_valid_name(), so that a bad name fails here with a clear message rather
// than as an EINVAL from TUNSETIFF, and never turns into a path outside /sys/class/net.
bool valid_interface_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  for (const char c : name) {
    if (c == '/' || c == ':' || c == '\0' || std::isspace(static_cast<unsigned char>(c)))
      return false;
  }
  return true;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// The interface's tun_flags (IFF_TAP, IFF_MULTI_QUEUE, ...), or nullopt if it is not a tun/tap.
std::optional<unsigned long> tun_flags(const std::string& name) {
  std::ifstream in("/sys/class/net/" + name + "/tun_flags");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  return std::strtoul(text.c_str(), nullptr, 0);  // "0x1002"
}

// For the command in a hint: what `id -un` prints.
std::string user_name() {
  const uid_t uid = ::geteuid();
  const passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? pw->pw_name : std::to_string(uid);
}

UniqueFd open_tun_device() {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (fd) return fd;
  if (errno == ENOENT) fail("/dev/net/tun: No such file or directory (load the tun module)");
  throw_errno("/dev/net/tun");
}

[[noreturn]] void fail_attach(const std::string& name, int err, bool existed,
                              std::optional<unsigned long> flags) {
  switch (err) {
    case EBUSY: fail("{}: in use by another process", name);
    case EPERM:
      if (!existed) {
        fail(
            "{0}: no such tap device, and creating one needs CAP_NET_ADMIN (create it: ip tuntap "
            "add {0} mode tap user {1}; ip link set {0} up)",
            name, user_name());
      }
      fail("{0}: owned by another user (ip tuntap add {0} mode tap user {1})", name, user_name());
    case EINVAL:
      if (flags && (*flags & IFF_MULTI_QUEUE)) {
        fail(
            "{0}: is a multi-queue tap and vmm needs a single-queue one (recreate it: ip tuntap "
            "del {0} mode tap multi_queue; ip tuntap add {0} mode tap user {1})",
            name, user_name());
      }
      fail(
          "{0}: the tap refuses the flags vmm needs, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR on a "
          "single "
          "queue (its tun_flags: {1}; recreate it: ip tuntap del {0} mode tap; ip tuntap add {0} "
          "mode tap user {2})",
          name, flags ? fmt::format("{:#x}", *flags) : "unknown", user_name());
    default: throw Error(errno_message(name + ": TUNSETIFF", err));
  }
}

// Brings a tap we created up, or warns that an existing one is down (it is the user's to manage).
void check_link_up(const std::string& name, bool created) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) throw_errno(name + ": socket");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.c_str(), name.size());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) throw_errno(name + ": SIOCGIFFLAGS");
  if (ifr.ifr_flags & IFF_UP) return;
  if (!created) {
    spdlog::warn("{0} is down: the guest's packets go nowhere until `ip link set {0} up`", name);
    return;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0) throw_errno(name + ": bringing it up");
}

}  // namespace

Tap Tap::open(const std::string& name) {
  if (!valid_interface_name(name)) fail("{}: not a valid interface name", name);
  const bool existed = exists("/sys/class/net/" + name);
  const std::optional<unsigned long> flags = existed ? tun_flags(name) : std::nullopt;
  if (existed && !(flags && (*flags & IFF_TAP))) fail("{}: exists but is not a tap device", name);

  UniqueFd fd = open_tun_device();
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.c_str(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) fail_attach(name, errno, existed, flags);
  const bool created = !existed;

  int hdr_size = kVnetHdrSize;
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_size) != 0) throw_errno(name + ": TUNSETVNETHDRSZ");
  Tap tap(std::move(fd), name, created);
  tap.set_offload(0);  // until the guest accepts some, every packet arrives whole and checksummed
  if (created) spdlog::info("created tap {} (it goes away when vmm exits)", name);
  check_link_up(name, created);
  return tap;
}

void Tap::set_offload(unsigned tun_flags) {
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(tun_flags)) != 0)
    throw_errno(fmt::format("{}: TUNSETOFFLOAD {:#x}", name_, tun_flags));
}

}  // namespace vmm::devices
