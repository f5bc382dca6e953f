#include "devices/backends/tap.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::devices {
namespace {

constexpr char kTapName[] = "vmmtest0";
constexpr uint16_t kEtherType = 0x88b5;  // IEEE local experimental: nothing else sends it
constexpr size_t kVnetHdrSize = 12;

// Tests run their bodies in a forked child, where gtest assertions would be lost; these throw
// instead, and the child reports the message to the parent.
struct ChildFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ChildSkip : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define CHILD_CHECK(cond)                                                         \
  do {                                                                            \
    if (!(cond)) throw ChildFailure(fmt::format("line {}: {}", __LINE__, #cond)); \
  } while (0)
#define CHILD_CHECK_EQ(actual, expected)                                                   \
  do {                                                                                     \
    const auto& a = (actual);                                                              \
    const auto& e = (expected);                                                            \
    if (!(a == e))                                                                         \
      throw ChildFailure(                                                                  \
          fmt::format("line {}: {} is \"{}\", expected \"{}\"", __LINE__, #actual, a, e)); \
  } while (0)

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// Unshares the network and mount namespaces and mounts a sysfs of the new network namespace,
// so taps live and die with the child and /sys/class/net shows only the child's interfaces.
void enter_fresh_namespaces() {
  if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) throw ChildSkip(errno_text("unshare"));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    throw ChildSkip(errno_text("making / private"));
  if (::mount("sysfs", "/sys", "sysfs", 0, nullptr) != 0)
    throw ChildSkip(errno_text("mounting sysfs"));
}

// Runs `body` in a child in fresh namespaces and turns its outcome into a gtest result.
void run_isolated(const std::function<void()>& body) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    read_end.reset();
    std::string report;
    try {
      enter_fresh_namespaces();
      body();
    } catch (const ChildSkip& e) {
      report = std::string("SKIP ") + e.what();
    } catch (const ChildFailure& e) {
      report = e.what();
    } catch (const std::exception& e) {
      report = std::string("unexpected exception: ") + e.what();
    }
    if (!report.empty() && ::write(write_end.get(), report.data(), report.size()) < 0) _exit(2);
    _exit(0);
  }
  write_end.reset();
  std::string report;
  char buf[512];
  ssize_t n;
  while ((n = ::read(read_end.get(), buf, sizeof(buf))) > 0) report.append(buf, n);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  if (report.rfind("SKIP ", 0) == 0) GTEST_SKIP() << report.substr(5);
  EXPECT_EQ(report, "");
}

// The vmm::Error message Tap::open throws, or "" if it opens.
std::string open_error(const std::string& name) {
  try {
    Tap::open(name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A persistent tap (or tun) made with a first fd, the way `ip tuntap add` does.
void make_persistent(const std::string& name, short flags, std::optional<uid_t> owner = {}) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) throw ChildFailure(errno_text("/dev/net/tun"));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = flags;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) throw ChildFailure(errno_text("TUNSETIFF"));
  if (owner && ::ioctl(fd.get(), TUNSETOWNER, static_cast<unsigned long>(*owner)) != 0)
    throw ChildFailure(errno_text("TUNSETOWNER"));
  if (::ioctl(fd.get(), TUNSETPERSIST, 1UL) != 0) throw ChildFailure(errno_text("TUNSETPERSIST"));
}

short link_flags(const std::string& name) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) throw ChildFailure(errno_text("SIOCGIFFLAGS"));
  return ifr.ifr_flags;
}

// Captures what the code under test logs (the child's own logger; the parent's is untouched).
std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> capture_log() {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  sink->set_pattern("%l: %v");
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  return sink;
}

bool logged(spdlog::sinks::ringbuffer_sink_mt& sink, const std::string& line) {
  const std::vector<std::string> lines = sink.last_formatted();
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(line) != std::string::npos; });
}

// Drops to nobody, keeping a /dev/net/tun it may open (the host's is often root-only 0600) so
// that what stops it is the tap's own permission check. Private to the child's mount namespace.
void become_nobody() {
  if (::mount("tmpfs", "/dev/net", "tmpfs", 0, "mode=0755") != 0)
    throw ChildSkip(errno_text("mounting a tmpfs on /dev/net"));
  if (::mknod("/dev/net/tun", S_IFCHR | 0666, makedev(10, 200)) != 0 ||
      ::chmod("/dev/net/tun", 0666) != 0)
    throw ChildSkip(errno_text("mknod /dev/net/tun"));
  if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0)
    throw ChildFailure(errno_text("dropping privileges"));
}

std::string user_name(uid_t uid) {
  const passwd* pw = ::getpwuid(uid);
  return pw != nullptr ? pw->pw_name : std::to_string(uid);
}

std::string nobody_name() {
  return user_name(65534);
}

std::vector<uint8_t> test_frame(uint8_t tag) {
  std::vector<uint8_t> frame = {0xff,
                                0xff,
                                0xff,
                                0xff,
                                0xff,
                                0xff,  // broadcast
                                0x02,
                                0x00,
                                0x00,
                                0x00,
                                0x00,
                                tag,  // locally administered
                                kEtherType >> 8,
                                kEtherType & 0xff};
  for (int i = 0; frame.size() < 60; ++i) frame.push_back(static_cast<uint8_t>(tag + i));
  return frame;
}

// One packet from the non-blocking `fd`, waiting up to 2 s; empty on timeout.
std::vector<uint8_t> receive(int fd) {
  pollfd pfd{fd, POLLIN, 0};
  if (::poll(&pfd, 1, 2000) != 1) return {};
  std::vector<uint8_t> buf(65536);
  const ssize_t n = ::read(fd, buf.data(), buf.size());
  if (n < 0) throw ChildFailure(errno_text("read"));
  buf.resize(static_cast<size_t>(n));
  return buf;
}

class TapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/net/tun", F_OK) != 0) GTEST_SKIP() << "no /dev/net/tun (tun module)";
    // Taps need CAP_NET_ADMIN; the private network and mount namespaces need CAP_SYS_ADMIN.
    std::ifstream status("/proc/self/status");
    std::string line;
    uint64_t caps = 0;
    while (std::getline(status, line)) {
      if (line.rfind("CapEff:", 0) == 0) caps = std::stoull(line.substr(7), nullptr, 16);
    }
    const uint64_t needed = (1ULL << CAP_NET_ADMIN) | (1ULL << CAP_SYS_ADMIN);
    if ((caps & needed) != needed) GTEST_SKIP() << "needs CAP_NET_ADMIN and CAP_SYS_ADMIN";
  }
};

TEST(TapNameTest, BadNamesAreRefusedBeforeTouchingAnything) {
  for (const std::string name :
       {"", "0123456789abcdef", "a/b", "tap 0", "tap\t0", "tap0\n", ".", "..", "tap:0"}) {
    try {
      Tap::open(name);
      ADD_FAILURE() << "opened \"" << name << "\"";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), name + ": not a valid interface name");
    }
  }
}

TEST_F(TapTest, CreatesAMissingTapUpNonBlockingAndCloseOnExec) {
  run_isolated([] {
    const auto log = capture_log();
    {
      Tap tap = Tap::open(kTapName);
      CHILD_CHECK(tap.created());
      CHILD_CHECK_EQ(tap.name(), kTapName);
      CHILD_CHECK(logged(*log, "info: created tap vmmtest0 (it goes away when vmm exits)"));
      CHILD_CHECK(link_flags(kTapName) & IFF_UP);
      CHILD_CHECK(::fcntl(tap.fd(), F_GETFL) & O_NONBLOCK);
      CHILD_CHECK(::fcntl(tap.fd(), F_GETFD) & FD_CLOEXEC);

      ifreq ifr{};
      CHILD_CHECK(::ioctl(tap.fd(), TUNGETIFF, &ifr) == 0);
      CHILD_CHECK_EQ(ifr.ifr_flags, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
      int hdr_size = 0;
      CHILD_CHECK(::ioctl(tap.fd(), TUNGETVNETHDRSZ, &hdr_size) == 0);
      CHILD_CHECK_EQ(hdr_size, 12);
    }
    CHILD_CHECK(::if_nametoindex(kTapName) == 0);  // gone with the fd
  });
}

TEST_F(TapTest, AttachesToAnExistingTapAndLeavesItDown) {
  run_isolated([] {
    make_persistent(kTapName, IFF_TAP | IFF_NO_PI);
    const auto log = capture_log();
    {
      Tap tap = Tap::open(kTapName);
      CHILD_CHECK(!tap.created());
      CHILD_CHECK(!(link_flags(kTapName) & IFF_UP));
      CHILD_CHECK(logged(*log,
                         "warning: vmmtest0 is down: the guest's packets go nowhere until "
                         "`ip link set vmmtest0 up`"));
      ifreq ifr{};
      CHILD_CHECK(::ioctl(tap.fd(), TUNGETIFF, &ifr) == 0);
      CHILD_CHECK_EQ(ifr.ifr_flags, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_PERSIST);
    }
    CHILD_CHECK(::if_nametoindex(kTapName) != 0);  // persistent: it outlives us
  });
}

TEST_F(TapTest, TapInUseIsRefused) {
  run_isolated([] {
    Tap first = Tap::open(kTapName);
    CHILD_CHECK_EQ(open_error(kTapName), "vmmtest0: in use by another process");
  });
}

TEST_F(TapTest, InterfacesThatAreNotTapsAreRefused) {
  run_isolated([] {
    CHILD_CHECK_EQ(open_error("lo"), "lo: exists but is not a tap device");
    make_persistent("vmmtun0", IFF_TUN | IFF_NO_PI);
    CHILD_CHECK_EQ(open_error("vmmtun0"), "vmmtun0: exists but is not a tap device");
  });
}

TEST_F(TapTest, MultiQueueTapIsRefused) {
  run_isolated([] {
    make_persistent(kTapName, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE);
    CHILD_CHECK_EQ(open_error(kTapName),
                   "vmmtest0: is a multi-queue tap and vmm needs a single-queue one (recreate it: "
                   "ip tuntap del vmmtest0 mode tap multi_queue; ip tuntap add vmmtest0 mode tap "
                   "user " +
                       user_name(::geteuid()) + ")");
  });
}

TEST_F(TapTest, CreatingWithoutPrivilegeSaysHowToCreateIt) {
  run_isolated([] {
    become_nobody();
    CHILD_CHECK_EQ(open_error(kTapName),
                   fmt::format("vmmtest0: no such tap device, and creating one needs "
                               "CAP_NET_ADMIN (create it: ip tuntap add vmmtest0 mode tap user {}; "
                               "ip link set vmmtest0 up)",
                               nobody_name()));
  });
}

TEST_F(TapTest, TapOwnedByAnotherUserIsRefused) {
  run_isolated([] {
    make_persistent(kTapName, IFF_TAP | IFF_NO_PI, /*owner=*/0);
    become_nobody();
    CHILD_CHECK_EQ(open_error(kTapName),
                   fmt::format("vmmtest0: owned by another user (ip tuntap add vmmtest0 mode tap "
                               "user {})",
                               nobody_name()));
  });
}

TEST_F(TapTest, SetOffload) {
  run_isolated([] {
    Tap tap = Tap::open(kTapName);
    tap.set_offload(TUN_F_CSUM | TUN_F_TSO4);
    tap.set_offload(0);
    try {
      tap.set_offload(TUN_F_TSO4);  // segmentation offload without checksum offload
      throw ChildFailure("TUN_F_TSO4 alone was accepted");
    } catch (const Error& e) {
      CHILD_CHECK_EQ(std::string(e.what()), "vmmtest0: TUNSETOFFLOAD 0x2: Invalid argument");
    }
  });
}

TEST_F(TapTest, PacketsCrossTheTapBothWays) {
  run_isolated([] {
    Tap tap = Tap::open(kTapName);
    UniqueFd sock(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(kEtherType)));
    CHILD_CHECK(sock.valid());
    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(kEtherType);
    addr.sll_ifindex = static_cast<int>(::if_nametoindex(kTapName));
    CHILD_CHECK(::bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);

    // Guest to host: a zero vnet header (no offloads) and the frame.
    const std::vector<uint8_t> out = test_frame(1);
    std::vector<uint8_t> packet(kVnetHdrSize, 0);
    packet.insert(packet.end(), out.begin(), out.end());
    CHILD_CHECK(::write(tap.fd(), packet.data(), packet.size()) ==
                static_cast<ssize_t>(packet.size()));
    CHILD_CHECK(receive(sock.get()) == out);

    // Host to guest: the tap fd yields the vnet header, then the frame. The kernel may send its
    // own packets (IPv6 neighbour discovery) onto the fresh link first; they are skipped.
    const std::vector<uint8_t> in = test_frame(2);
    CHILD_CHECK(::send(sock.get(), in.data(), in.size(), 0) == static_cast<ssize_t>(in.size()));
    for (;;) {
      const std::vector<uint8_t> got = receive(tap.fd());
      CHILD_CHECK(!got.empty());
      if (got.size() != kVnetHdrSize + in.size()) continue;
      if (!std::equal(in.begin(), in.end(), got.begin() + kVnetHdrSize)) continue;
      CHILD_CHECK_EQ(got[0], 0);  // flags: no checksum needed
      CHILD_CHECK_EQ(got[1], 0);  // gso_type: VIRTIO_NET_HDR_GSO_NONE
      break;
    }
  });
}

}  // namespace
}  // namespace vmm::devices
