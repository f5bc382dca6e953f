// Each virtio device under a guest that keeps its queue full for ever: a "guest" thread keeps
// avail->idx = used->idx + size, every ring entry the same head (a chain the device answers at
// once, so no in-flight cap ever trips), and rings the doorbell; the device runs on its event loop
// thread. Each step is legal, and the queue never drains. The loop must still run other work
// between batches (what pause and the control socket need: both post to the loop) and stop (what
// stop and --timeout need) within a liveness bound, and no round of the loop may answer more than
// a queue's worth per fd the device watches. A device that pops until the queue is empty answers
// as many chains in one go as the guest keeps up with, and fails here.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/util/event_fd.hpp"
#include "devices/backends/async_io.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/net.hpp"
#include "devices/virtio/vsock.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/devices/temp_dir.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kChain = 0x80000;  // the one chain's buffers
// A liveness bound, not a speed check: a batch takes microseconds.
constexpr auto kBound = std::chrono::seconds(10);

// Plays the hostile guest on its own thread. Its ring writes go straight to RAM, outside
// ThreadSanitizer's view as a real guest's are (the device's reads are the ones that must cope).
class RacingGuest {
 public:
  RacingGuest(std::vector<uint8_t>& ram, const QueueConfig& queue, uint16_t head, int doorbell)
      : ram_(ram), queue_(queue), head_(head), doorbell_(doorbell) {}
  ~RacingGuest() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    running_ = false;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t rounds() const { return rounds_.load(); }

 private:
  __attribute__((no_sanitize("thread"))) void run() {
    auto* avail_ring = reinterpret_cast<volatile uint16_t*>(ram_.data() + queue_.avail_ring);
    auto* used_idx = reinterpret_cast<volatile uint16_t*>(ram_.data() + queue_.used_ring + 2);
    for (uint16_t i = 0; i < queue_.size; ++i) avail_ring[2 + i] = head_;
    const uint64_t one = 1;
    for (uint64_t round = 0; running_; ++round) {
      // Every slot holds the same head: the ring is full again as soon as the device moves on.
      avail_ring[1] = static_cast<uint16_t>(*used_idx + queue_.size);
      // The doorbell now and then: a system call per refill would let the device catch up.
      if (round % 1024 == 0) {
        [[maybe_unused]] const ssize_t n = ::write(doorbell_, &one, sizeof(one));
        rounds_ = round;
      }
    }
  }

  std::vector<uint8_t>& ram_;
  const QueueConfig queue_;
  const uint16_t head_;
  const int doorbell_;
  std::atomic<bool> running_{true};
  std::atomic<uint64_t> rounds_{0};
  std::thread thread_;
};

class RacingGuestTest : public ::testing::Test {
 protected:
  // Activates `device` on `queue_count` queues, with a doorbell each, and starts its loop thread.
  void activate(VirtioDevice& device, uint16_t queue_count, uint16_t size) {
    for (uint16_t q = 0; q < queue_count; ++q) {
      queues_.push_back(std::make_unique<SplitQueue>(memory_, size));
      queues_.back()->activate(testing::queue_config(q, size));
      doorbells_.push_back(std::make_unique<EventFd>());
    }
    Activation activation{kFeatureVersion1, {}, &interrupt_};
    for (uint16_t q = 0; q < queue_count; ++q) {
      activation.queues.push_back(queues_[q].get());
      activation.notify_fds.push_back(doorbells_[q]->fd());
    }
    device.activate(activation);
    loop_thread_ = std::thread([this] {
      loop_.run();
      loop_returned_ = true;
    });
  }

  // The guest hammers queue `q` with chain `head` while the loop must keep serving posted work and
  // then stop. `state` describes the device for the failure message.
  void race(uint16_t q, uint16_t head, const std::function<std::string()>& state) {
    RacingGuest guest(ram_, queues_[q]->config(), head, doorbells_[q]->fd());
    guest.start();
    wait_for([&] { return used_idx(q) != 0; });
    ASSERT_NE(used_idx(q), 0) << "the device never answered the guest";
    // A probe on the loop thread, posted again each time it runs. Between two of its runs the
    // device may answer one batch, a queue's worth, per fd it watches that can start one (the
    // doorbell and its resume eventfd) in each of two rounds (the rest of the probe's round and
    // the part of the next before it): four batches. A device that pops until the queue is empty
    // answers as many as the guest keeps up with, thousands.
    const uint16_t size = queues_[q]->config().size;
    uint32_t largest = 0;
    uint16_t last = used_idx(q);
    int probes = 0;
    std::atomic<bool> probing_done{false};
    // For a second of racing: the guest must get a core while the device works, now and then.
    const auto probe_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    std::function<void()> probe = [&] {
      const uint16_t now = used_idx(q);
      largest = std::max<uint32_t>(largest, static_cast<uint16_t>(now - last));
      last = now;
      if (++probes < 100 || std::chrono::steady_clock::now() < probe_until) {
        loop_.post(probe);
      } else {
        probing_done = true;
      }
    };
    loop_.post(probe);
    if (!wait_for([&] { return probing_done.load(); })) {
      guest.stop();  // lets a device stuck in its notification return, so the test can end
      wait_for([&] { return probing_done.load(); });
      FAIL() << "the loop ran " << probes << " rounds in " << kBound.count()
             << " s while the guest kept the queue full (" << guest.rounds()
             << " guest rounds): " << state();
    }
    EXPECT_LE(largest, 4u * size) << "the device answered " << largest
                                  << " chains between two runs of the probe: more than a queue's "
                                     "worth per wake-up";
    loop_.stop();
    const bool stopped = wait_for([&] { return loop_returned_.load(); });
    guest.stop();
    EXPECT_TRUE(stopped) << "the loop did not stop within " << kBound.count()
                         << " s while the guest kept the queue full: " << state();
  }

  void TearDown() override {
    loop_.stop();
    if (loop_thread_.joinable()) loop_thread_.join();
  }

  uint16_t used_idx(uint16_t q) {
    uint16_t idx;
    std::memcpy(&idx, ram_.data() + queues_[q]->config().used_ring + 2, sizeof(idx));
    return idx;
  }
  static bool wait_for(const std::function<bool()>& done) {
    const auto give_up = std::chrono::steady_clock::now() + kBound;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return done();
  }
  void desc(uint16_t q, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags,
            uint16_t next = 0) {
    ASSERT_TRUE(memory_.write_obj(queues_[q]->config().desc_table + 16ull * index,
                                  VirtqDesc{addr, len, flags, next}));
  }

  std::vector<uint8_t> ram_ = std::vector<uint8_t>(kRamSize);
  GuestMemory memory_ = GuestMemory::from_regions({{0, kRamSize, ram_.data()}});
  EventLoop loop_;
  testing::FakeDeviceInterrupt interrupt_;
  std::vector<std::unique_ptr<SplitQueue>> queues_;
  std::vector<std::unique_ptr<EventFd>> doorbells_;
  std::atomic<bool> loop_returned_{false};
  std::thread loop_thread_;
};

TEST_F(RacingGuestTest, VirtioBlockKeepsServingTheLoopWhileTheGuestKeepsItsQueueFull) {
  devices::testing::TempDir dir;
  const std::string image = dir.file("disk.img");
  UniqueFd fd(::open(image.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd);
  ASSERT_EQ(::ftruncate(fd.get(), 1 << 20), 0);
  VirtioBlock device(memory_, loop_, 1 << 20, AsyncIo::create(fd.get(), VirtioBlock::kQueueSize),
                     {}, "vda");
  activate(device, 1, VirtioBlock::kQueueSize);
  // A request of an unknown type: refused at once (UNSUPP), nothing goes to the engine.
  ASSERT_TRUE(memory_.write_obj(kChain, uint32_t{0x7f}));
  desc(0, 0, kChain, 16, kVirtqDescFNext, 1);
  desc(0, 1, kChain + 16, 1, kVirtqDescFWrite);
  race(0, 0, [&] { return device.debug_state() + "; " + queues_[0]->debug_state(); });
}

TEST_F(RacingGuestTest, VirtioNetKeepsServingTheLoopWhileTheGuestKeepsItsTransmitQueueFull) {
  auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
  VirtioNet device(memory_, loop_,
                   std::make_unique<devices::testing::SocketBackend>(std::move(device_end)),
                   {0x52, 0x54, 0, 0, 0, 1}, "eth0");
  activate(device, 2, VirtioNet::kQueueSize);
  // A transmit chain with a device-writable buffer: dropped at once, nothing reaches the host.
  desc(1, 0, kChain, 64, kVirtqDescFWrite);
  race(1, 0, [&] { return device.debug_state() + "; " + queues_[1]->debug_state(); });
  EXPECT_GT(device.counters().of(NetError::kTxDeviceWritable), uint64_t{VirtioNet::kQueueSize});
}

TEST_F(RacingGuestTest, VirtioVsockKeepsServingTheLoopWhileTheGuestKeepsItsTransmitQueueFull) {
  devices::testing::TempDir dir;
  VirtioVsock device(loop_, 3, dir.file("vsock.sock"), "vsock0");
  activate(device, 3, VirtioVsock::kQueueSize);
  // A transmit chain shorter than a packet header: dropped at once.
  desc(1, 0, kChain, 8, 0);
  race(1, 0, [&] { return queues_[1]->debug_state(); });
  EXPECT_GT(device.counters().tx_dropped, uint64_t{VirtioVsock::kQueueSize});
}

}  // namespace
}  // namespace vmm::devices::virtio
