#include "devices/vhost_user/vhost_user_device.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/vhost_user/backend_channel.hpp"
#include "devices/vhost_user/device_spec.hpp"
#include "devices/virtio/queue.hpp"
#include "tests/devices/vhost_user/virtiofsd_fixture.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::vhost_user {
namespace {

using virtio::kVirtqDescFNext;
using virtio::kVirtqDescFWrite;
using virtio::SplitQueue;
using virtio::testing::Driver;
using virtio::testing::FakeDeviceInterrupt;
using virtio::testing::queue_config;

// The FUSE protocol (linux/fuse.h), as far as the tests speak it.
constexpr uint32_t kFuseLookup = 1;
constexpr uint32_t kFuseInit = 26;
constexpr uint64_t kFuseRootId = 1;
struct FuseInHeader {
  uint32_t len;
  uint32_t opcode;
  uint64_t unique;
  uint64_t nodeid;
  uint32_t uid, gid, pid, padding;
};
static_assert(sizeof(FuseInHeader) == 40);
struct FuseOutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
struct FuseInitIn {
  uint32_t major, minor, max_readahead, flags;
};
constexpr uint64_t kEntryOutAttrSize = 48;  // fuse_entry_out: 40 bytes, then fuse_attr's ino, size

constexpr uint16_t kRequestQueue = 1;  // virtio-fs: 0 is hiprio
constexpr uint16_t kQueueSize = 64;
constexpr uint32_t kReplyBytes = 4096;

// What the code under test logs, while the test runs.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    sink_->set_pattern("%l: %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink_));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  int count(const std::string& text) const {
    const std::vector<std::string> lines = sink_->last_formatted();
    return static_cast<int>(std::count_if(lines.begin(), lines.end(), [&](const std::string& l) {
      return l.find(text) != std::string::npos;
    }));
  }
  std::string all() const {
    std::string text;
    for (const std::string& line : sink_->last_formatted()) text += line;
    return text;
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
};

// The guest of a virtio-fs device: RAM in a memfd, the transport's queues, and the driver of the
// request queue. Request n uses heads 2n and 2n+1: its readable part at request_address(n), a
// reply buffer of kReplyBytes at reply_address(n).
class FsGuest {
 public:
  GuestMemory memory = GuestMemory::allocate(64 << 20, GuestMemory::Backing::kMemfd);
  EventLoop loop;
  FakeDeviceInterrupt interrupt;
  std::vector<std::unique_ptr<SplitQueue>> queues;
  uint16_t queue_size = kQueueSize;  // the size the driver picks (queue_config: up to 256)
  Driver driver{memory, queue_config(kRequestQueue, kQueueSize)};

  static uint64_t request_address(uint32_t n) { return 0x100000 + 0x10000ull * n; }
  static uint64_t reply_address(uint32_t n) { return request_address(n) + 0x8000; }
  static uint64_t unique(uint32_t n) { return 0x7000 + n; }

  // Fresh queues and rings, all ready (the hiprio queue too unless `hiprio` is false), EVENT_IDX
  // on the guest's side; then the device's activation.
  void activate(VhostUserDevice& device, bool hiprio = true) {
    queues.clear();
    std::vector<SplitQueue*> pointers;
    for (uint16_t max_size : device.queue_max_sizes()) {
      const auto index = static_cast<uint16_t>(queues.size());
      queues.push_back(std::make_unique<SplitQueue>(memory, max_size));
      const virtio::QueueConfig config = queue_config(index, queue_size, true);
      const std::vector<uint8_t> zeros(0x5000);
      ASSERT_TRUE(memory.write(config.desc_table, zeros));
      if (index == kRequestQueue || hiprio) queues.back()->activate(config);
      pointers.push_back(queues.back().get());
    }
    driver.restart(queue_config(kRequestQueue, queue_size, true));
    device.activate(
        {.driver_features = device.features(), .queues = pointers, .interrupt = &interrupt});
  }

  // Makes request n available (a fuse_in_header, then `args`) and returns its head.
  uint16_t submit(uint32_t n, uint32_t opcode, uint64_t nodeid, std::span<const uint8_t> args) {
    const FuseInHeader header{.len = static_cast<uint32_t>(sizeof(FuseInHeader) + args.size()),
                              .opcode = opcode,
                              .unique = unique(n),
                              .nodeid = nodeid,
                              .uid = 0,
                              .gid = 0,
                              .pid = 1,
                              .padding = 0};
    EXPECT_TRUE(memory.write_obj(request_address(n), header));
    EXPECT_TRUE(memory.write(request_address(n) + sizeof(header), args));
    const auto head = static_cast<uint16_t>(2 * n);
    driver.desc(head, request_address(n), header.len, kVirtqDescFNext, head + 1);
    driver.desc(head + 1, reply_address(n), kReplyBytes, kVirtqDescFWrite);
    driver.publish(head);
    return head;
  }
  uint16_t submit_init(uint32_t n) {
    const FuseInitIn init{.major = 7, .minor = 31, .max_readahead = 0, .flags = 0};
    return submit(n, kFuseInit, 0, {reinterpret_cast<const uint8_t*>(&init), sizeof(init)});
  }
  uint16_t submit_lookup(uint32_t n, const std::string& name) {
    const std::string arg = name + '\0';
    return submit(n, kFuseLookup, kFuseRootId,
                  {reinterpret_cast<const uint8_t*>(arg.data()), arg.size()});
  }

  FuseOutHeader reply(uint32_t n) const {
    return *memory.read_obj<FuseOutHeader>(reply_address(n));
  }

  // Runs the loop until the used ring holds `count` entries; false after 10 s.
  bool wait_used(uint16_t count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (driver.used_idx() < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.run_once(10);
    }
    return true;
  }
};

std::unique_ptr<BackendChannel> channel_to(const std::string& socket_path) {
  return std::make_unique<BackendChannel>(BackendChannel::connect(socket_path),
                                          "vhost-user fs (test)");
}

// ---- Against Debian's virtiofsd ----

class VirtiofsdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (auto why = testing::Virtiofsd::unavailable()) GTEST_SKIP() << *why;
    virtiofsd_ = std::make_unique<testing::Virtiofsd>();
    device_ = std::make_unique<VhostUserDevice>(guest_.memory, guest_.loop,
                                                channel_to(virtiofsd_->socket_path()),
                                                fs_device_spec("test", 1));
  }

  // FUSE_INIT as request n, answered by virtiofsd.
  void init(uint32_t n) {
    const uint16_t head = guest_.submit_init(n);
    device_->notify(kRequestQueue);
    ASSERT_TRUE(guest_.wait_used(static_cast<uint16_t>(guest_.driver.used_idx() + 1)))
        << virtiofsd_->log();
    EXPECT_EQ(guest_.driver.used(guest_.driver.used_idx() - 1).id, head);
    const FuseOutHeader reply = guest_.reply(n);
    EXPECT_EQ(reply.error, 0);
    EXPECT_EQ(reply.unique, FsGuest::unique(n));
    EXPECT_EQ(*guest_.memory.read_obj<uint32_t>(FsGuest::reply_address(n) + 16), 7u);  // major
  }

  LogCapture log_;
  FsGuest guest_;
  std::unique_ptr<testing::Virtiofsd> virtiofsd_;
  std::unique_ptr<VhostUserDevice> device_;
};

TEST_F(VirtiofsdTest, InitAndLookupGetVirtiofsdsReplies) {
  std::ofstream(virtiofsd_->shared_dir() + "/hello.txt") << "hello, guest\n";
  guest_.activate(*device_);
  init(0);

  const uint16_t head = guest_.submit_lookup(1, "hello.txt");
  device_->notify(kRequestQueue);
  ASSERT_TRUE(guest_.wait_used(2)) << virtiofsd_->log();
  const FuseOutHeader reply = guest_.reply(1);
  EXPECT_EQ(reply.error, 0);
  EXPECT_EQ(reply.unique, FsGuest::unique(1));
  EXPECT_EQ(guest_.driver.used(1).id, head);
  EXPECT_EQ(guest_.driver.used(1).len, reply.len);
  EXPECT_EQ(*guest_.memory.read_obj<uint64_t>(FsGuest::reply_address(1) + sizeof(FuseOutHeader) +
                                              kEntryOutAttrSize),
            13u);  // the file's size
  EXPECT_GT(guest_.interrupt.used, 0);
  EXPECT_EQ(device_->requests_in_flight(), 0u);

  // A name that isn't there: virtiofsd's own error, passed through.
  guest_.submit_lookup(2, "missing");
  device_->notify(kRequestQueue);
  ASSERT_TRUE(guest_.wait_used(3));
  EXPECT_EQ(guest_.reply(2).error, -ENOENT);
  EXPECT_FALSE(device_->backend_dead());
  EXPECT_EQ(log_.count("error"), 0) << log_.all();
}

TEST_F(VirtiofsdTest, KilledBackendFailsItsRequestsWithEioAndLogsOnce) {
  guest_.activate(*device_);
  init(0);
  virtiofsd_->kill();

  // Forwarded before the loop hears of the hang-up: the backend holds it when it dies.
  guest_.submit_lookup(1, "anything");
  device_->notify(kRequestQueue);
  EXPECT_EQ(device_->requests_in_flight(), 1u);
  ASSERT_TRUE(guest_.wait_used(2));
  EXPECT_EQ(guest_.reply(1).error, -EIO);
  EXPECT_EQ(guest_.reply(1).unique, FsGuest::unique(1));
  EXPECT_EQ(guest_.driver.used(1).len, sizeof(FuseOutHeader));
  EXPECT_TRUE(device_->backend_dead());
  EXPECT_EQ(guest_.interrupt.needs_reset, 1);
  EXPECT_EQ(log_.count("error: vhost-user fs (test): the backend closed its socket: requests fail "
                       "with I/O errors from now on"),
            1)
      << log_.all();

  // Later requests fail at once, without the loop.
  guest_.submit_lookup(2, "anything");
  device_->notify(kRequestQueue);
  EXPECT_EQ(guest_.driver.used_idx(), 3);
  EXPECT_EQ(guest_.reply(2).error, -EIO);
  EXPECT_EQ(device_->requests_in_flight(), 0u);
  EXPECT_EQ(log_.count("requests fail with I/O errors"), 1);
  EXPECT_NE(device_->debug_state().find("backend gone"), std::string::npos);

  // A reset waits for nothing; the device stays failed after it.
  bool done = false;
  device_->reset([&] { done = true; });
  EXPECT_TRUE(done);
  guest_.activate(*device_);
  guest_.submit_lookup(0, "anything");
  device_->notify(kRequestQueue);
  EXPECT_EQ(guest_.driver.used_idx(), 1);
  EXPECT_EQ(guest_.reply(0).error, -EIO);
}

TEST_F(VirtiofsdTest, ResetStopsTheRingsAndActivationStartsThemAgain) {
  guest_.activate(*device_);
  init(0);
  bool done = false;
  device_->reset([&] { done = true; });
  EXPECT_TRUE(done);
  EXPECT_FALSE(device_->backend_dead());

  // The driver starts over on fresh rings: virtiofsd serves them from index 0.
  guest_.activate(*device_);
  init(0);
  EXPECT_FALSE(device_->backend_dead());
  EXPECT_EQ(log_.count("error"), 0) << log_.all();
}

// ---- Against a fake backend ----

// Plays a vhost-user backend on its end of a socketpair, on a thread of its own: answers what the
// frontend asks (acking each request, REPLY_ACK), and records what it was told. In this process,
// the "user addresses" the frontend hands it are pointers: the test reads the shadow rings and
// writes used entries through them, as a backend would through its mappings.
class FakeBackend {
 public:
  static constexpr uint64_t kFeatures =
      virtio::kFeatureVersion1 | virtio::kFeatureRingIndirectDesc | kFeatureProtocolFeatures;
  static constexpr uint64_t kProtocolFeatures = kProtocolFeatureMq | kProtocolFeatureReplyAck;
  static constexpr uint16_t kQueues = 2;

  struct Vring {
    uint32_t size = 0;
    uint8_t* avail = nullptr;
    uint8_t* used = nullptr;
    UniqueFd call;
  };

  FakeBackend() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) throw_errno("socketpair");
    frontend_ = UniqueFd(fds[0]);
    backend_ = UniqueFd(fds[1]);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeBackend() {
    ::shutdown(backend_.get(), SHUT_RDWR);
    thread_.join();
  }
  FakeBackend(const FakeBackend&) = delete;
  FakeBackend& operator=(const FakeBackend&) = delete;

  std::unique_ptr<BackendChannel> channel() {
    return std::make_unique<BackendChannel>(std::move(frontend_), "vhost-user fs (fake)");
  }

  std::vector<Request> requests() const {
    const std::lock_guard lock(mutex_);
    return requests_;
  }
  uint64_t features_set() const {
    const std::lock_guard lock(mutex_);
    return features_set_;
  }
  std::vector<MemoryRegion> regions() const {
    const std::lock_guard lock(mutex_);
    return regions_;
  }

  uint16_t avail_idx(uint32_t index) { return load16(vring(index).avail + 2); }
  uint16_t avail_entry(uint32_t index, uint16_t slot) {
    Vring& ring = vring(index);
    return load16(ring.avail + 4 + 2 * (slot % ring.size));
  }
  // Writes a used entry at `slot`, publishes `used_idx` and calls the frontend.
  void complete(uint32_t index, uint16_t slot, uint32_t id, uint32_t len, uint16_t used_idx) {
    Vring& ring = vring(index);
    const virtio::VirtqUsedElem used{id, len};
    std::memcpy(ring.used + 4 + 8 * (slot % ring.size), &used, sizeof(used));
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ring.used + 2))
        .store(used_idx, std::memory_order_release);
    const uint64_t one = 1;
    ASSERT_EQ(::write(ring.call.get(), &one, sizeof(one)), 8);
  }

 private:
  static uint16_t load16(const uint8_t* p) {
    return std::atomic_ref<uint16_t>(*const_cast<uint16_t*>(reinterpret_cast<const uint16_t*>(p)))
        .load(std::memory_order_acquire);
  }
  Vring& vring(uint32_t index) {
    const std::lock_guard lock(mutex_);
    return vrings_[index];
  }

  // One message: its header, its payload, the fds it carried.
  bool receive(uint32_t& request, uint32_t& flags, std::vector<uint8_t>& payload,
               std::vector<UniqueFd>& fds) {
    uint32_t header[3];
    iovec iov{header, sizeof(header)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMemoryRegions)];
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    if (::recvmsg(backend_.get(), &message, MSG_WAITALL | MSG_CMSG_CLOEXEC) !=
        static_cast<ssize_t>(sizeof(header))) {
      return false;
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds.emplace_back(fd);
      }
    }
    request = header[0];
    flags = header[1];
    payload.resize(header[2]);
    return payload.empty() || ::recv(backend_.get(), payload.data(), payload.size(), MSG_WAITALL) ==
                                  static_cast<ssize_t>(payload.size());
  }
  void reply(uint32_t request, std::span<const uint8_t> payload) {
    const uint32_t header[3] = {request, kFlagVersion | kFlagReply,
                                static_cast<uint32_t>(payload.size())};
    std::vector<uint8_t> bytes(reinterpret_cast<const uint8_t*>(header),
                               reinterpret_cast<const uint8_t*>(header) + sizeof(header));
    bytes.insert(bytes.end(), payload.begin(), payload.end());
    ASSERT_EQ(::send(backend_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void reply_u64(uint32_t request, uint64_t value) {
    reply(request, {reinterpret_cast<const uint8_t*>(&value), sizeof(value)});
  }

  void serve() {
    uint32_t code;
    uint32_t flags;
    std::vector<uint8_t> payload;
    std::vector<UniqueFd> fds;
    while (receive(code, flags, payload, fds)) {
      handle(static_cast<Request>(code), payload, fds);
      if ((flags & kFlagNeedReply) != 0) reply_u64(code, 0);
      fds.clear();
    }
  }

  void handle(Request request, const std::vector<uint8_t>& payload, std::vector<UniqueFd>& fds) {
    const auto code = static_cast<uint32_t>(request);
    uint64_t words[5] = {};
    // An empty payload's data() may be null, which memcpy must not get even for 0 bytes.
    if (!payload.empty())
      std::memcpy(words, payload.data(), std::min(payload.size(), sizeof(words)));
    const std::lock_guard lock(mutex_);
    requests_.push_back(request);
    switch (request) {
      case Request::kGetFeatures: reply_u64(code, kFeatures); break;
      case Request::kGetProtocolFeatures: reply_u64(code, kProtocolFeatures); break;
      case Request::kGetQueueNum: reply_u64(code, kQueues); break;
      case Request::kGetVringBase: reply(code, payload); break;  // index, base 0
      case Request::kSetFeatures: features_set_ = words[0]; break;
      case Request::kSetVringNum: vrings_[words[0] & 0xffffffff].size = words[0] >> 32; break;
      case Request::kSetVringAddr: {
        Vring& ring = vrings_[words[0] & 0xffffffff];
        // index, flags; desc, used, avail, log
        ring.used = std::bit_cast<uint8_t*>(words[2]);
        ring.avail = std::bit_cast<uint8_t*>(words[3]);
        break;
      }
      case Request::kSetVringCall:
        if (!fds.empty()) vrings_[words[0] & 0xff].call = std::move(fds.front());
        break;
      case Request::kSetMemTable: {
        uint32_t count;
        std::memcpy(&count, payload.data(), sizeof(count));
        for (uint32_t i = 0; i < count && 8 + 32 * (i + 1) <= payload.size(); ++i) {
          MemoryRegion region;
          std::memcpy(&region, payload.data() + 8 + 32 * i, sizeof(region));
          regions_.push_back(region);
        }
        break;
      }
      default: break;
    }
  }

  UniqueFd frontend_;
  UniqueFd backend_;
  mutable std::mutex mutex_;
  std::vector<Request> requests_;
  uint64_t features_set_ = 0;
  std::vector<MemoryRegion> regions_;
  std::map<uint32_t, Vring> vrings_;
  std::thread thread_;
};

class FakeBackendTest : public ::testing::Test {
 protected:
  // Request n as the device forwarded it: the head the backend finds in the shadow avail ring.
  uint16_t forward(uint32_t n) {
    const uint16_t head = guest_.submit_lookup(n, "x");
    device_.notify(kRequestQueue);
    return head;
  }

  LogCapture log_;
  FsGuest guest_;
  FakeBackend backend_;
  VhostUserDevice device_{guest_.memory, guest_.loop, backend_.channel(),
                          fs_device_spec("test", 1)};
};

TEST_F(FakeBackendTest, HandshakeMapsGuestRamAndTheShadowRings) {
  const std::vector<Request> handshake = {Request::kSetOwner,
                                          Request::kGetFeatures,
                                          Request::kGetProtocolFeatures,
                                          Request::kSetProtocolFeatures,
                                          Request::kGetQueueNum,
                                          Request::kSetMemTable};
  EXPECT_EQ(backend_.requests(), handshake);
  const std::vector<MemoryRegion> regions = backend_.regions();
  ASSERT_EQ(regions.size(), 2u);  // 64 MiB of RAM, then the shadow rings
  EXPECT_EQ(regions[0].guest_address, 0u);
  EXPECT_EQ(regions[0].size, 64u << 20);
  EXPECT_EQ(regions[0].user_address, reinterpret_cast<uint64_t>(guest_.memory.regions()[0].host));
  EXPECT_EQ(regions[1].guest_address, 1u << 30);
  EXPECT_EQ(device_.queue_max_sizes(), std::vector<uint16_t>(2, 1024));
  EXPECT_EQ(device_.features(), virtio::kFeatureVersion1 | virtio::kFeatureRingEventIdx |
                                    virtio::kFeatureRingIndirectDesc);
  uint8_t tag[4];
  device_.read_config(0, tag);
  EXPECT_EQ(std::string(tag, tag + 4), "test");
}

TEST_F(FakeBackendTest, ActivationStartsReadyQueuesWithoutEventIdx) {
  guest_.activate(device_, /*hiprio=*/false);
  EXPECT_EQ(backend_.features_set() & virtio::kFeatureRingEventIdx, 0u);
  EXPECT_NE(backend_.features_set() & kFeatureProtocolFeatures, 0u);
  const std::vector<Request> all = backend_.requests();
  const std::vector<Request> started(all.begin() + 6, all.end());
  const std::vector<Request> expected = {
      Request::kSetFeatures,   Request::kSetVringNum,  Request::kSetVringBase,
      Request::kSetVringAddr,  Request::kSetVringCall, Request::kSetVringKick,
      Request::kSetVringEnable};  // queue 1 only: the hiprio queue is not ready
  EXPECT_EQ(started, expected);
}

TEST_F(FakeBackendTest, UsedEntriesReturnToTheGuest) {
  guest_.activate(device_);
  const uint16_t first = forward(0);
  const uint16_t second = forward(1);
  EXPECT_EQ(backend_.avail_idx(kRequestQueue), 2);
  EXPECT_EQ(backend_.avail_entry(kRequestQueue, 0), first);
  EXPECT_EQ(backend_.avail_entry(kRequestQueue, 1), second);
  EXPECT_EQ(device_.requests_in_flight(), 2u);

  // Out of order, as a backend may; a length beyond the reply buffer is clamped.
  backend_.complete(kRequestQueue, 0, second, 16, 1);
  backend_.complete(kRequestQueue, 1, first, kReplyBytes + 100, 2);
  ASSERT_TRUE(guest_.wait_used(2));
  EXPECT_EQ(guest_.driver.used(0).id, second);
  EXPECT_EQ(guest_.driver.used(0).len, 16u);
  EXPECT_EQ(guest_.driver.used(1).id, first);
  EXPECT_EQ(guest_.driver.used(1).len, kReplyBytes);
  EXPECT_EQ(device_.requests_in_flight(), 0u);
  EXPECT_GT(guest_.interrupt.used, 0);
  EXPECT_FALSE(device_.backend_dead());
  EXPECT_EQ(device_.metrics().requests, 2u);
  EXPECT_EQ(device_.metrics().bytes, 16u + kReplyBytes);  // as clamped
  EXPECT_EQ(device_.metrics().errors, 0u);
}

TEST_F(FakeBackendTest, EachWakeUpMovesABudgetAndComesBackForTheRest) {
  guest_.queue_size = 256;
  guest_.activate(device_);
  // 100 one-descriptor requests (FORGET-like: nothing to write back).
  constexpr uint16_t kRequests = 100;
  static_assert(kRequests > VhostUserDevice::kBudget);
  for (uint16_t head = 0; head < kRequests; ++head) {
    guest_.driver.desc(head, FsGuest::request_address(0), sizeof(FuseInHeader));
    guest_.driver.publish(head);
  }
  device_.notify(kRequestQueue);
  EXPECT_EQ(backend_.avail_idx(kRequestQueue), VhostUserDevice::kBudget);
  guest_.loop.run_once(10);  // the resume eventfd
  EXPECT_EQ(backend_.avail_idx(kRequestQueue), kRequests);

  for (uint16_t slot = 0; slot < kRequests; ++slot) {
    backend_.complete(kRequestQueue, slot, backend_.avail_entry(kRequestQueue, slot), 0,
                      static_cast<uint16_t>(slot + 1));
  }
  guest_.loop.run_once(10);  // the call
  EXPECT_EQ(guest_.driver.used_idx(), VhostUserDevice::kBudget);
  ASSERT_TRUE(guest_.wait_used(kRequests));
  EXPECT_EQ(device_.requests_in_flight(), 0u);
  EXPECT_FALSE(device_.backend_dead());
}

TEST_F(FakeBackendTest, HeadOfferedAgainWhileInFlightIsReturnedEmpty) {
  guest_.activate(device_);
  const uint16_t head = forward(0);
  guest_.driver.publish(head);
  device_.notify(kRequestQueue);
  EXPECT_EQ(backend_.avail_idx(kRequestQueue), 1);  // the backend sees it once
  EXPECT_EQ(guest_.driver.used_idx(), 1);
  EXPECT_EQ(guest_.driver.used(0).len, 0u);
  EXPECT_EQ(log_.count("while it is in flight"), 1) << log_.all();
  backend_.complete(kRequestQueue, 0, head, 16, 1);
  ASSERT_TRUE(guest_.wait_used(2));
  EXPECT_EQ(guest_.driver.used(1).len, 16u);
  EXPECT_FALSE(device_.backend_dead());
  EXPECT_EQ(device_.metrics().errors, 1u);
  EXPECT_EQ(device_.metrics().requests, 1u);
}

TEST_F(FakeBackendTest, BadUsedIdMeansTheBackendIsBroken) {
  guest_.activate(device_);
  forward(0);
  backend_.complete(kRequestQueue, 0, 7, 0, 1);  // head 7 was never offered
  ASSERT_TRUE(guest_.wait_used(1));
  EXPECT_EQ(guest_.reply(0).error, -EIO);
  EXPECT_EQ(guest_.reply(0).unique, FsGuest::unique(0));
  EXPECT_TRUE(device_.backend_dead());
  EXPECT_EQ(guest_.interrupt.needs_reset, 1);
  EXPECT_EQ(log_.count("error: vhost-user fs (fake): queue 1: the backend returned used id 7, "
                       "not a request in flight: requests fail with I/O errors from now on"),
            1)
      << log_.all();
  // Later ones fail at once.
  forward(1);
  EXPECT_EQ(guest_.driver.used_idx(), 2);
  EXPECT_EQ(guest_.reply(1).error, -EIO);
  EXPECT_EQ(device_.metrics().errors, 2u);  // the one in flight, the later one
  EXPECT_EQ(device_.metrics().requests, 0u);
}

TEST_F(FakeBackendTest, UsedIndexBeyondTheRequestsInFlightMeansTheBackendIsBroken) {
  guest_.activate(device_);
  const uint16_t head = forward(0);
  backend_.complete(kRequestQueue, 0, head, 16, 5);
  ASSERT_TRUE(guest_.wait_used(1));
  EXPECT_EQ(guest_.reply(0).error, -EIO);
  EXPECT_TRUE(device_.backend_dead());
  EXPECT_EQ(log_.count("used index moved by 5 with 1 requests in flight"), 1) << log_.all();
}

TEST_F(FakeBackendTest, ResetStopsTheStartedRingsAndDropsWhatTheBackendHeld) {
  guest_.activate(device_, /*hiprio=*/false);
  const uint16_t head = forward(0);
  bool done = false;
  device_.reset([&] { done = true; });
  EXPECT_TRUE(done);
  EXPECT_EQ(backend_.requests().back(), Request::kGetVringBase);
  const std::vector<Request> all = backend_.requests();
  EXPECT_EQ(std::count(all.begin(), all.end(), Request::kGetVringBase), 1);  // queue 1 only
  EXPECT_EQ(device_.requests_in_flight(), 0u);
  // A late completion reaches nobody.
  backend_.complete(kRequestQueue, 0, head, 16, 1);
  guest_.loop.run_once(10);
  EXPECT_EQ(guest_.driver.used_idx(), 0);
  EXPECT_FALSE(device_.backend_dead());
}

TEST_F(FakeBackendTest, RefusesToBeSnapshotted) {
  guest_.activate(device_);
  try {
    device_.quiesce(std::chrono::steady_clock::now());
    ADD_FAILURE() << "quiesce did not throw";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("can't be snapshotted"), std::string::npos);
  }
}

TEST(VhostUserDeviceTest, GuestRamMustBeAMemfd) {
  FakeBackend backend;
  const GuestMemory anonymous = GuestMemory::allocate(16 << 20, GuestMemory::Backing::kAnonymous);
  EventLoop loop;
  try {
    VhostUserDevice device(anonymous, loop, backend.channel(), fs_device_spec("test", 1));
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(std::string(error.what()),
              "vhost-user fs (fake): guest RAM must be a memfd to be shared with the backend");
  }
}

TEST(VhostUserDeviceTest, BackendServingTooFewQueuesIsRefused) {
  FakeBackend backend;  // serves 2
  const GuestMemory memory = GuestMemory::allocate(16 << 20, GuestMemory::Backing::kMemfd);
  EventLoop loop;
  try {
    VhostUserDevice device(memory, loop, backend.channel(), fs_device_spec("test", 4));
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_EQ(std::string(error.what()),
              "vhost-user fs (fake): the backend serves 2 queues, the device needs 5");
  }
}

}  // namespace
}  // namespace vmm::devices::vhost_user
