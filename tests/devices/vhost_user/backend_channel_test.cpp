#include "devices/vhost_user/backend_channel.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "tests/devices/vhost_user/backend_error.hpp"
#include "tests/devices/vhost_user/reply_message.hpp"
#include "tests/devices/vhost_user/virtiofsd_fixture.hpp"

namespace vmm::devices::vhost_user {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr const char* kName = "vhost-user fs (test)";

struct Received {
  std::vector<uint8_t> bytes;  // header and payload
  std::vector<UniqueFd> fds;
  uint32_t flags() const {
    uint32_t value;
    std::memcpy(&value, bytes.data() + 4, 4);
    return value;
  }
  std::vector<uint8_t> payload() const { return {bytes.begin() + kHeaderSize, bytes.end()}; }
};

// A fake backend: the peer end of a socketpair. Replies are written before the channel asks (the
// socket buffers them), so no thread is needed; what the channel sent is read back afterwards.
class FakeBackend {
 public:
  FakeBackend() {
    std::array<int, 2> fds{};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0) {
      throw std::runtime_error("socketpair");
    }
    channel_end_.reset(fds[0]);
    peer_.reset(fds[1]);
  }

  BackendChannel channel(milliseconds timeout = std::chrono::seconds(5)) {
    return BackendChannel(std::move(channel_end_), kName, timeout);
  }

  void send(const std::vector<uint8_t>& bytes, int fd = -1) const {
    iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(int))> control{};
    if (fd >= 0) {
      header.msg_control = control.data();
      header.msg_controllen = control.size();
      cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    }
    ASSERT_EQ(::sendmsg(peer_.get(), &header, 0), static_cast<ssize_t>(bytes.size()));
  }

  // One message the channel sent, with the fds that came with it.
  Received receive() const {
    Received out;
    out.bytes.resize(kHeaderSize);
    receive_into(out, 0);
    uint32_t size;
    std::memcpy(&size, out.bytes.data() + 8, 4);
    out.bytes.resize(kHeaderSize + size);
    if (size != 0) receive_into(out, kHeaderSize);
    return out;
  }

  void hang_up() { peer_.reset(); }

 private:
  void receive_into(Received& out, size_t from) const {
    iovec iov{out.bytes.data() + from, out.bytes.size() - from};
    alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(int) * kMaxMemoryRegions)> control{};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control.data();
    header.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(peer_.get(), &header, MSG_CMSG_CLOEXEC);
    ASSERT_EQ(n, static_cast<ssize_t>(iov.iov_len));
    for (cmsghdr* cmsg = CMSG_FIRSTHDR(&header); cmsg != nullptr;
         cmsg = CMSG_NXTHDR(&header, cmsg)) {
      const size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
        out.fds.emplace_back(fd);
      }
    }
  }

  UniqueFd channel_end_;
  UniqueFd peer_;
};

using testing::error_of;
using testing::reply;

size_t open_fds() {
  return static_cast<size_t>(std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                                           std::filesystem::directory_iterator()));
}

bool same_file(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  return ::fstat(a, &sa) == 0 && ::fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

TEST(BackendChannel, QueriesAndSendsTheSpecsBytes) {
  FakeBackend backend;
  auto channel = backend.channel();
  backend.send(reply(Request::kGetFeatures, u64_payload(0x1'7500'0000)));
  EXPECT_EQ(channel.get_features(), 0x1'7500'0000u);
  EXPECT_THAT(backend.receive().bytes, ElementsAreArray({1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_FALSE(channel.dead());
  EXPECT_EQ(channel.name(), kName);
}

TEST(BackendChannel, ReadsOneReplyPerRequest) {
  FakeBackend backend;
  auto channel = backend.channel();
  backend.send(reply(Request::kGetQueueNum, u64_payload(2)));
  backend.send(reply(Request::kGetVringBase, vring_state_payload(1, 9)));
  EXPECT_EQ(channel.get_queue_num(), 2);
  EXPECT_EQ(channel.get_vring_base(1), 9u);
  backend.receive();
  EXPECT_EQ(backend.receive().payload(), vring_state_payload(1, 0));
}

TEST(BackendChannel, SetMemTablePassesEachRegionsFd) {
  FakeBackend backend;
  auto channel = backend.channel();
  const UniqueFd ram(::memfd_create("ram", MFD_CLOEXEC));
  const std::array regions = {MemoryRegion{0, 0x1000, 0x7f00'0000'0000, 0}};
  const std::array fds = {ram.get()};
  channel.set_mem_table(regions, fds);
  const Received sent = backend.receive();
  EXPECT_EQ(sent.flags(), kFlagVersion);  // no REPLY_ACK negotiated: no NEED_REPLY
  EXPECT_EQ(sent.payload(), memory_table_payload(regions));
  ASSERT_EQ(sent.fds.size(), 1u);
  EXPECT_TRUE(same_file(sent.fds[0].get(), ram.get()));
  // One fd per region: anything else is the caller's mistake, refused before sending.
  EXPECT_THROW(channel.set_mem_table(regions, {}), Error);
  EXPECT_FALSE(channel.dead());
}

TEST(BackendChannel, RingFdsTravelWithTheirIndex) {
  FakeBackend backend;
  auto channel = backend.channel();
  const UniqueFd kick(::eventfd(0, EFD_CLOEXEC));
  channel.set_vring_kick(1, kick.get());
  channel.set_vring_call(0, -1);
  const Received with_fd = backend.receive();
  EXPECT_EQ(with_fd.payload(), u64_payload(1));
  ASSERT_EQ(with_fd.fds.size(), 1u);
  EXPECT_TRUE(same_file(with_fd.fds[0].get(), kick.get()));
  const Received without = backend.receive();
  EXPECT_EQ(without.payload(), u64_payload(kVringNoFd));
  EXPECT_TRUE(without.fds.empty());
}

TEST(BackendChannel, GetConfigAsksForTheBytesAndChecksThem) {
  FakeBackend backend;
  auto channel = backend.channel();
  const std::array<uint8_t, 4> data = {1, 2, 3, 4};
  backend.send(reply(Request::kGetConfig, config_payload(4, data)));
  EXPECT_THAT(channel.get_config(4, 4), ElementsAreArray(data));
  const std::array<uint8_t, 4> zeros{};
  EXPECT_EQ(backend.receive().payload(), config_payload(4, zeros));
  // Larger than asked.
  const std::array<uint8_t, 8> more{};
  backend.send(reply(Request::kGetConfig, config_payload(4, more)));
  EXPECT_THAT(error_of([&] { channel.get_config(4, 4); }), HasSubstr("asked for 4 bytes"));
}

TEST(BackendChannel, ReplyAckOnceNegotiated) {
  FakeBackend backend;
  auto channel = backend.channel();
  channel.set_protocol_features(kProtocolFeatureReplyAck | kProtocolFeatureMq);
  EXPECT_EQ(backend.receive().flags(), kFlagVersion);
  backend.send(reply(Request::kSetVringNum, u64_payload(0)));
  channel.set_vring_num(0, 256);
  EXPECT_EQ(backend.receive().flags(), kFlagVersion | kFlagNeedReply);
  backend.send(reply(Request::kSetVringBase, u64_payload(1)));
  EXPECT_EQ(error_of([&] { channel.set_vring_base(0, 0); }),
            "vhost-user fs (test): SET_VRING_BASE refused (status 1)");
  EXPECT_TRUE(channel.dead());
}

TEST(BackendChannel, NoReplyTimesOutAndKillsTheChannel) {
  FakeBackend backend;
  auto channel = backend.channel(milliseconds(100));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): no reply to GET_FEATURES within 100 ms");
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, milliseconds(100));
  EXPECT_LT(waited, milliseconds(2000));
  EXPECT_TRUE(channel.dead());
  // Dead from then on, at once, even with a good reply waiting.
  backend.send(reply(Request::kGetFeatures, u64_payload(1)));
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): backend failed earlier: no reply to GET_FEATURES within 100 ms");
  EXPECT_EQ(error_of([&] { channel.set_owner(); }),
            "vhost-user fs (test): backend failed earlier: no reply to GET_FEATURES within 100 ms");
}

TEST(BackendChannel, WrongReplyKillsTheChannel) {
  FakeBackend backend;
  auto channel = backend.channel();
  backend.send(reply(Request::kGetProtocolFeatures, u64_payload(1)));
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): answered GET_FEATURES with GET_PROTOCOL_FEATURES");
  EXPECT_TRUE(channel.dead());
}

TEST(BackendChannel, ShortMessageTimesOut) {
  FakeBackend backend;
  auto channel = backend.channel(milliseconds(50));
  auto partial = reply(Request::kGetFeatures, u64_payload(1));
  partial.resize(kHeaderSize + 3);
  backend.send(partial);
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): no reply to GET_FEATURES within 50 ms");
}

TEST(BackendChannel, HangUpMidReply) {
  FakeBackend backend;
  auto channel = backend.channel();
  // A backend that dies halfway through its reply: the request reaches it first.
  std::thread peer([&] {
    backend.receive();
    auto partial = reply(Request::kGetFeatures, u64_payload(1));
    partial.resize(kHeaderSize + 3);
    backend.send(partial);
    backend.hang_up();
  });
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): closed the connection while vmm waited for the reply to "
            "GET_FEATURES");
  peer.join();
  EXPECT_TRUE(channel.dead());
}

TEST(BackendChannel, HangUpBeforeTheRequest) {
  FakeBackend backend;
  auto channel = backend.channel();
  backend.hang_up();
  EXPECT_EQ(error_of([&] { channel.set_owner(); }),
            "vhost-user fs (test): sending SET_OWNER: Broken pipe");
  EXPECT_TRUE(channel.dead());
}

TEST(BackendChannel, FdsInAReplyAreClosedAndRefused) {
  FakeBackend backend;
  auto channel = backend.channel();
  {
    const UniqueFd smuggled(::eventfd(0, EFD_CLOEXEC));
    backend.send(reply(Request::kGetFeatures, u64_payload(1)), smuggled.get());
  }
  const size_t before = open_fds();
  EXPECT_EQ(error_of([&] { channel.get_features(); }),
            "vhost-user fs (test): reply to GET_FEATURES: carries file descriptors");
  EXPECT_EQ(open_fds(), before);
}

TEST(BackendChannel, ConnectNamesTheSocket) {
  EXPECT_THAT(
      [] { BackendChannel::connect("/nonexistent/x.sock"); },
      ::testing::ThrowsMessage<Error>("socket=/nonexistent/x.sock: No such file or directory"));
  EXPECT_THAT([] { BackendChannel::connect(std::string(200, 'x')); },
              ::testing::ThrowsMessage<Error>(HasSubstr("not a usable Unix socket path")));
}

// The handshake a virtio-fs device does, against the real daemon; then the daemon dies.
TEST(BackendChannel, HandshakeWithVirtiofsdThenItDies) {
  if (auto why = testing::Virtiofsd::unavailable()) GTEST_SKIP() << *why;
  testing::Virtiofsd daemon;
  BackendChannel channel(BackendChannel::connect(daemon.socket_path()), kName);
  channel.set_owner();
  const uint64_t features = channel.get_features();
  EXPECT_NE(features & kFeatureProtocolFeatures, 0u);
  EXPECT_NE(features & (uint64_t{1} << 32), 0u);  // VIRTIO_F_VERSION_1
  const uint64_t protocol = channel.get_protocol_features();
  EXPECT_NE(protocol & kProtocolFeatureReplyAck, 0u);
  EXPECT_NE(protocol & kProtocolFeatureMq, 0u);
  channel.set_protocol_features(protocol & (kProtocolFeatureReplyAck | kProtocolFeatureMq));
  EXPECT_EQ(channel.get_queue_num(), 2);  // hiprio and one request queue
  channel.set_features(features);

  const UniqueFd ram(::memfd_create("ram", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(ram.get(), 1 << 20), 0);
  const std::array regions = {MemoryRegion{0, 1 << 20, 0x7f00'0000'0000, 0}};
  const std::array fds = {ram.get()};
  channel.set_mem_table(regions, fds);  // acked: REPLY_ACK is on
  channel.set_vring_num(0, 128);
  channel.set_vring_base(0, 7);
  channel.set_vring_addr({.index = 0,
                          .desc_user_address = 0x7f00'0000'0000,
                          .used_user_address = 0x7f00'0000'1000,
                          .avail_user_address = 0x7f00'0000'0800});
  const UniqueFd call(::eventfd(0, EFD_CLOEXEC));
  const UniqueFd kick(::eventfd(0, EFD_CLOEXEC));
  channel.set_vring_call(0, call.get());
  channel.set_vring_kick(0, kick.get());
  channel.set_vring_enable(0, true);
  EXPECT_EQ(channel.get_vring_base(0), 7u);
  EXPECT_FALSE(channel.dead());

  daemon.kill();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THAT(error_of([&] { channel.get_features(); }), StartsWith("vhost-user fs (test): "));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000));
  EXPECT_TRUE(channel.dead());
}

}  // namespace
}  // namespace vmm::devices::vhost_user
