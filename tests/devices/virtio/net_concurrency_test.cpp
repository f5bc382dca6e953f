// virtio-net with a driver on its own thread, as a guest's is: the device runs on an event loop
// thread, the "guest" thread plays Linux's virtio_net/virtio_ring (event-idx suppression on both
// sides, mergeable receive buffers, interrupts awaited only after re-enabling them), and a host
// thread plays the tap. Every packet must arrive, whole and in order, both ways: a lost
// notification or interrupt shows up as a driver that waits in vain, a receive packet whose
// buffers the driver sees before all of them are published as a packet Linux would drop.

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/net.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

constexpr uint16_t kSize = VirtioNet::kQueueSize;
constexpr uint64_t kRamSize = 4 << 20;
constexpr uint64_t kRxBuffers = 0x100000;  // kSize buffers of kRxBufferSize
constexpr uint32_t kRxBufferSize = 2048;
constexpr uint64_t kTxBuffers = 0x200000;  // kSize buffers of kTxBufferSize
constexpr uint32_t kTxBufferSize = 4096;
constexpr uint32_t kMaxFrame = 3000;  // more than one receive buffer holds: merged
constexpr uint32_t kPackets = 20000;  // each way
// How long the driver waits for an interrupt it asked for before it calls the device stuck. A
// liveness bound, not a speed check: the whole exchange takes about a second.
constexpr auto kStuck = std::chrono::seconds(20);

// Frame `seq`: its length varies from 60 to kMaxFrame bytes; it starts with seq, then a pattern.
uint32_t frame_length(uint32_t seq) {
  return 60 + (seq * 397) % (kMaxFrame - 59);
}
uint8_t frame_byte(uint32_t seq, uint32_t i) {
  return static_cast<uint8_t>(seq * 7 + i * 13);
}
std::vector<uint8_t> make_frame(uint32_t seq) {
  std::vector<uint8_t> frame(frame_length(seq));
  for (uint32_t i = 4; i < frame.size(); ++i) frame[i] = frame_byte(seq, i);
  std::memcpy(frame.data(), &seq, 4);
  return frame;
}
// Empty when `frame` is frame `seq`, else what is wrong.
std::string check_frame(const uint8_t* frame, size_t size, uint32_t seq) {
  uint32_t got = 0;
  if (size >= 4) std::memcpy(&got, frame, 4);
  if (size != frame_length(seq) || got != seq) {
    return "expected frame " + std::to_string(seq) + " (" + std::to_string(frame_length(seq)) +
           " bytes), got " + std::to_string(size) + " bytes starting with " + std::to_string(got);
  }
  for (uint32_t i = 4; i < size; ++i) {
    if (frame[i] != frame_byte(seq, i)) {
      return "frame " + std::to_string(seq) + " differs at byte " + std::to_string(i);
    }
  }
  return {};
}

// Interrupts wake the driver thread.
class WakingInterrupt final : public DeviceInterrupt {
 public:
  void signal_used() override {
    {
      std::lock_guard lock(mutex_);
      ++count_;
    }
    raised_.notify_one();
  }
  void signal_config_change() override {}
  void signal_needs_reset() override { needs_reset = true; }
  uint64_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }
  // False if no interrupt came after the one counted as `seen` within kStuck.
  bool wait_after(uint64_t seen) {
    std::unique_lock lock(mutex_);
    return raised_.wait_for(lock, kStuck, [&] { return count_ != seen; });
  }
  std::atomic<bool> needs_reset{false};

 private:
  std::mutex mutex_;
  std::condition_variable raised_;
  uint64_t count_ = 0;
};

// What virtio_ring adds to the plain ring accesses of testing::Driver: buffers added in a batch
// and published by kick_prepare, the barriers, and the driver's own last_used index.
class Ring {
 public:
  Ring(const GuestMemory& memory, uint16_t queue_index)
      : memory_(memory),
        config_(testing::queue_config(queue_index, kSize, /*event_idx=*/true)),
        driver_(memory, config_) {}
  const QueueConfig& config() const { return config_; }
  void set_desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags) {
    driver_.desc(index, addr, len, flags);
  }
  // Adds `head` to the ring; published by kick_needed().
  void add(uint16_t head) {
    const uint16_t slot = (avail_idx_ + added_) & (kSize - 1);
    (void)memory_.write_obj<uint16_t>(config_.avail_ring + 4 + 2ull * slot, head);
    ++added_;
  }
  // virtqueue_kick_prepare(): publishes what was added, then asks the device's avail_event.
  bool kick_needed() {
    if (added_ == 0) return false;
    const uint16_t old_idx = avail_idx_;
    avail_idx_ = static_cast<uint16_t>(avail_idx_ + added_);
    added_ = 0;
    std::atomic_thread_fence(std::memory_order_release);
    driver_.set_avail_idx(avail_idx_);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t event = driver_.avail_event();
    return static_cast<uint16_t>(avail_idx_ - event - 1) <
           static_cast<uint16_t>(avail_idx_ - old_idx);
  }
  bool has_used() {
    const bool more = driver_.used_idx() != last_used_;
    std::atomic_thread_fence(std::memory_order_acquire);
    return more;
  }
  VirtqUsedElem take_used() { return driver_.used(last_used_++); }
  // virtqueue_enable_cb_delayed() (enable_cb() with `ahead` = 0): an interrupt once the device
  // has used `ahead` + 1 more entries. True if there are used entries already (don't wait).
  bool enable_interrupt(uint16_t ahead) {
    driver_.set_used_event(static_cast<uint16_t>(last_used_ + ahead));
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return has_used();
  }
  uint16_t outstanding() const { return static_cast<uint16_t>(avail_idx_ - last_used_); }

 private:
  const GuestMemory& memory_;
  QueueConfig config_;
  testing::Driver driver_;
  uint16_t avail_idx_ = 0;
  uint16_t added_ = 0;
  uint16_t last_used_ = 0;
};

class VirtioNetConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [device_end, peer] = devices::testing::socket_pair(SOCK_SEQPACKET);
    peer_ = std::move(peer);
    device_.emplace(memory_, loop_,
                    std::make_unique<devices::testing::SocketBackend>(std::move(device_end)),
                    std::array<uint8_t, 6>{0x52, 0x54, 0, 0, 0, 1}, "eth0 (socketpair)");
    rx_queue_.activate(rx_.config());
    tx_queue_.activate(tx_.config());
    device_->activate(Activation{kFeatureVersion1 | kFeatureRingEventIdx |
                                     kFeatureRingIndirectDesc | kNetFeatureMrgRxbuf |
                                     kNetFeatureMac,
                                 {&rx_queue_, &tx_queue_},
                                 &interrupt_,
                                 // The doorbells: what the ioeventfds are to a real guest.
                                 {doorbell_[0].fd(), doorbell_[1].fd()}});
  }

  // Linux's virtio_net on one thread: fills the receive ring, sends kPackets, takes kPackets,
  // sleeping on the interrupt only when neither ring has news. Empty when all went well.
  std::string run_driver() {
    for (uint16_t i = 0; i < kSize; ++i) {
      rx_.set_desc(i, kRxBuffers + uint64_t{kRxBufferSize} * i, kRxBufferSize, kVirtqDescFWrite);
      rx_.add(i);
    }
    if (rx_.kick_needed()) doorbell_[0].signal();
    std::vector<uint16_t> free_tx;
    for (uint16_t i = 0; i < kSize; ++i) free_tx.push_back(static_cast<uint16_t>(kSize - 1 - i));
    uint32_t sent = 0;
    uint32_t received = 0;
    std::vector<uint8_t> packet;
    while (received < kPackets || sent < kPackets || tx_.outstanding() != 0) {
      const uint64_t interrupts = interrupt_.count();
      bool progress = false;
      // Receive: a packet's num_buffers buffers must all be in the used ring when its first is.
      while (rx_.has_used()) {
        progress = true;
        VirtqUsedElem elem = rx_.take_used();
        VirtioNetHdr header{};
        if (elem.id >= kSize || elem.len < kNetHdrSize || elem.len > kRxBufferSize) {
          return "receive: bad used element id " + std::to_string(elem.id);
        }
        const uint64_t first = kRxBuffers + uint64_t{kRxBufferSize} * elem.id;
        (void)memory_.read(first, {reinterpret_cast<uint8_t*>(&header), sizeof(header)});
        packet.assign(elem.len - kNetHdrSize, 0);
        (void)memory_.read(first + kNetHdrSize, packet);
        rx_.add(static_cast<uint16_t>(elem.id));
        for (uint16_t b = 1; b < header.num_buffers; ++b) {
          if (!rx_.has_used()) {
            return "receive: packet " + std::to_string(received) + " has " +
                   std::to_string(header.num_buffers) + " buffers but only " + std::to_string(b) +
                   " were published with its first (Linux drops it: 'buffers missing')";
          }
          elem = rx_.take_used();
          if (elem.id >= kSize || elem.len > kRxBufferSize) return "receive: bad used element";
          const size_t at = packet.size();
          packet.resize(at + elem.len);
          (void)memory_.read(kRxBuffers + uint64_t{kRxBufferSize} * elem.id,
                             {packet.data() + at, elem.len});
          rx_.add(static_cast<uint16_t>(elem.id));
        }
        if (std::string wrong = check_frame(packet.data(), packet.size(), received);
            !wrong.empty()) {
          return "receive: " + wrong;
        }
        ++received;
      }
      if (rx_.kick_needed()) doorbell_[0].signal();
      // Transmit: reclaim what the device used, send while descriptors are free.
      while (tx_.has_used()) {
        progress = true;
        free_tx.push_back(static_cast<uint16_t>(tx_.take_used().id));
      }
      while (sent < kPackets && !free_tx.empty()) {
        progress = true;
        const uint16_t d = free_tx.back();
        free_tx.pop_back();
        const std::vector<uint8_t> frame = make_frame(sent++);
        const uint64_t buffer = kTxBuffers + uint64_t{kTxBufferSize} * d;
        (void)memory_.write_obj(buffer, VirtioNetHdr{});
        (void)memory_.write(buffer + kNetHdrSize, frame);
        tx_.set_desc(d, buffer, kNetHdrSize + static_cast<uint32_t>(frame.size()), 0);
        tx_.add(d);
      }
      if (tx_.kick_needed()) doorbell_[1].signal();
      if (progress) continue;
      // Nothing to do: re-enable interrupts (transmit ones delayed to 3/4 of what is in flight,
      // as start_xmit does when the ring is full), look once more, then sleep.
      const bool rx_news = rx_.enable_interrupt(0);
      const bool tx_news = tx_.enable_interrupt(static_cast<uint16_t>(tx_.outstanding() * 3 / 4));
      if (rx_news || tx_news) continue;
      if (interrupt_.needs_reset) return "the device asked for a reset";
      if (!interrupt_.wait_after(interrupts)) {
        return "no interrupt for " + std::to_string(kStuck.count()) + " s with " +
               std::to_string(received) + " packets received, " + std::to_string(sent) + " sent, " +
               std::to_string(tx_.outstanding()) +
               " transmit chains outstanding; device: " + device_->debug_state() +
               "; rx queue: " + rx_queue_.debug_state() + "; tx queue: " + tx_queue_.debug_state();
      }
    }
    return {};
  }

  // The tap's other side: sends kPackets frames and checks the kPackets it gets. Empty when all
  // went well.
  std::string run_host(const std::atomic<bool>& driver_done) {
    uint32_t sent = 0;
    uint32_t received = 0;
    std::vector<uint8_t> packet(kNetHdrSize + kMaxFrame + 1);
    while (sent < kPackets || received < kPackets) {
      pollfd pfd{peer_.get(), static_cast<short>(POLLIN | (sent < kPackets ? POLLOUT : 0)), 0};
      if (poll(&pfd, 1, 100) == 0 && driver_done) return "the driver gave up";
      if ((pfd.revents & POLLIN) != 0) {
        const ssize_t n = recv(peer_.get(), packet.data(), packet.size(), MSG_DONTWAIT);
        if (n > 0) {
          if (static_cast<size_t>(n) < kNetHdrSize) return "transmit: a packet without a header";
          if (std::string wrong = check_frame(packet.data() + kNetHdrSize,
                                              static_cast<size_t>(n) - kNetHdrSize, received);
              !wrong.empty()) {
            return "transmit: " + wrong;
          }
          ++received;
        }
      }
      if ((pfd.revents & POLLOUT) != 0 && sent < kPackets) {
        std::vector<uint8_t> out(kNetHdrSize);
        const std::vector<uint8_t> frame = make_frame(sent);
        out.insert(out.end(), frame.begin(), frame.end());
        if (send(peer_.get(), out.data(), out.size(), MSG_DONTWAIT) > 0) ++sent;
      }
    }
    return {};
  }

  std::vector<uint8_t> ram_ = std::vector<uint8_t>(kRamSize);
  GuestMemory memory_ = GuestMemory::from_regions({{0, kRamSize, ram_.data()}});
  EventLoop loop_;
  EventFd doorbell_[2];
  Ring rx_{memory_, 0};
  Ring tx_{memory_, 1};
  SplitQueue rx_queue_{memory_, kSize};
  SplitQueue tx_queue_{memory_, kSize};
  WakingInterrupt interrupt_;
  UniqueFd peer_;
  std::optional<VirtioNet> device_;
};

TEST_F(VirtioNetConcurrencyTest, EveryPacketArrivesWholeBothWaysWithADriverOnItsOwnThread) {
  std::thread device_thread([this] { loop_.run(); });
  std::atomic<bool> driver_done{false};
  std::string host_error;
  std::thread host_thread([&] { host_error = run_host(driver_done); });
  const std::string driver_error = run_driver();
  driver_done = true;
  host_thread.join();
  loop_.stop();
  device_thread.join();
  EXPECT_EQ(driver_error, "");
  EXPECT_EQ(host_error, "");
  const NetCounters counters = device_->counters();
  EXPECT_EQ(counters.rx_packets, kPackets);
  EXPECT_EQ(counters.tx_packets, kPackets);
  EXPECT_EQ(counters.rx_dropped, 0u);
  EXPECT_EQ(counters.tx_dropped, 0u);
}

}  // namespace
}  // namespace vmm::devices::virtio
