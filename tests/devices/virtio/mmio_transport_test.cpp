#include "devices/virtio/mmio_transport.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using devices::testing::FakeInterruptLine;
using ::testing::ElementsAre;

// Register offsets as Linux's virtio_mmio.h names them.
constexpr uint64_t kMagicValue = 0x000, kVersion = 0x004, kDeviceId = 0x008, kVendorId = 0x00c,
                   kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014, kDriverFeatures = 0x020,
                   kDriverFeaturesSel = 0x024, kQueueSel = 0x030, kQueueNumMax = 0x034,
                   kQueueNum = 0x038, kQueueReady = 0x044, kQueueNotify = 0x050,
                   kInterruptStatus = 0x060, kInterruptAck = 0x064, kStatus = 0x070,
                   kQueueDescLow = 0x080, kQueueDescHigh = 0x084, kQueueAvailLow = 0x090,
                   kQueueAvailHigh = 0x094, kQueueUsedLow = 0x0a0, kQueueUsedHigh = 0x0a4,
                   kShmLenLow = 0x0b0, kConfigGeneration = 0x0fc, kConfig = 0x100;

constexpr uint64_t kDeviceFeatureBit0 = 1;  // a device-specific feature the fake offers
constexpr uint64_t kOffered =
    kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc | kDeviceFeatureBit0;
constexpr uint32_t kFakeDeviceId = kDeviceIdBlock;
constexpr uint64_t kRamSize = 1 << 20;

// Where the driver puts queue `index`'s rings (inside RAM, suitably aligned).
constexpr uint64_t desc_table(uint32_t index) {
  return 0x10000 + 0x10000 * index;
}
constexpr uint64_t avail_ring(uint32_t index) {
  return desc_table(index) + 0x4000;
}
constexpr uint64_t used_ring(uint32_t index) {
  return desc_table(index) + 0x8000;
}

// What the transport did to the device; outlives the device, which the transport owns.
struct DeviceLog {
  std::vector<Activation> activations;
  std::vector<uint16_t> notifications;
  int resets = 0;
  std::array<uint8_t, 16> config = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                    0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
  bool throw_on_activate = false;
  // Returns every available chain to the driver on notification, as a real device would.
  bool complete_on_notify = false;
  std::function<void()> on_reset;
  // Set: reset() keeps its done callback here for the test to call (I/O still in flight).
  bool defer_reset_done = false;
  VirtioDevice::ResetDone pending_reset_done;
  EventLoop* loop = nullptr;  // where the device watches its notify fds
  uint32_t own_state = 0;     // what the device saves of its own
  // What restore_state() read, and how many activations it found done.
  std::optional<uint32_t> restored_own_state;
  size_t activations_at_restore = 0;
};

class FakeDevice final : public VirtioDevice {
 public:
  explicit FakeDevice(DeviceLog& log) : log_(log) {}

  uint32_t device_id() const override { return kFakeDeviceId; }
  uint64_t features() const override { return kOffered; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }

  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < log_.config.size() ? log_.config[offset + i] : 0;
    }
  }

  void activate(const Activation& activation) override {
    if (log_.throw_on_activate) fail("backend gone");
    log_.activations.push_back(activation);
    // As the real devices do: each queue's notify fd is watched while active.
    for (size_t queue = 0; queue < activation.notify_fds.size(); ++queue) {
      const int fd = activation.notify_fds[queue];
      log_.loop->add(fd, EPOLLIN, [this, fd, queue](uint32_t) {
        uint64_t count;
        ASSERT_EQ(::read(fd, &count, sizeof(count)), 8);
        notify(static_cast<uint16_t>(queue));
      });
      watched_.push_back(fd);
    }
  }
  void notify(uint16_t index) override {
    log_.notifications.push_back(index);
    if (!log_.complete_on_notify) return;
    const Activation& activation = log_.activations.back();
    SplitQueue& queue = *activation.queues[index];
    while (auto chain = queue.pop()) queue.add_used(std::move(*chain), 1);
    if (queue.needs_notification()) activation.interrupt->signal_used();
    if (queue.broken()) activation.interrupt->signal_needs_reset();
  }
  void save_state(StateWriter& out) const override { out.put(log_.own_state); }
  void restore_state(StateReader& in) override {
    log_.restored_own_state = in.get<uint32_t>();
    log_.activations_at_restore = log_.activations.size();
  }
  void reset(ResetDone done) override {
    ++log_.resets;
    for (int fd : watched_) log_.loop->remove(fd);
    watched_.clear();
    if (log_.on_reset) log_.on_reset();
    if (log_.defer_reset_done) {
      log_.pending_reset_done = std::move(done);
    } else {
      done();
    }
  }

 private:
  DeviceLog& log_;
  std::vector<int> watched_;
};

class MmioTransportTest : public ::testing::Test {
 protected:
  MmioTransportTest()
      : ram(kRamSize),
        memory(GuestMemory::from_regions({{0, kRamSize, ram.data()}})),
        transport(std::make_unique<MmioTransport>(memory, std::make_unique<FakeDevice>(log), irq,
                                                  owner, "virtio-fake vdz")) {
    log.loop = &loop;
  }

  uint32_t r32(uint64_t offset) {
    uint32_t value = 0xdeadbeef;
    transport->read(offset, {reinterpret_cast<uint8_t*>(&value), sizeof(value)});
    return value;
  }
  // A vCPU's write, then the loop's round that serves what it handed over.
  void w32(uint64_t offset, uint32_t value) {
    transport->write(offset, {reinterpret_cast<const uint8_t*>(&value), sizeof(value)});
    devices::testing::run_until_idle(loop);
  }
  // The guest's QueueNotify write as KVM's ioeventfd turns it into an event (queues that exist).
  void ioeventfd_notify(uint32_t index) {
    if (index < transport->queue_count()) {
      const uint64_t one = 1;
      ASSERT_EQ(::write(transport->notify_fd(static_cast<uint16_t>(index)), &one, 8), 8);
    }
    devices::testing::run_until_idle(loop);
  }

  // Linux's vm_get_features: the high word, then the low one.
  uint64_t read_device_features() {
    w32(kDeviceFeaturesSel, 1);
    uint64_t features = uint64_t{r32(kDeviceFeatures)} << 32;
    w32(kDeviceFeaturesSel, 0);
    return features | r32(kDeviceFeatures);
  }

  // virtio_dev_probe up to virtio_features_ok(): returns whether the device kept FEATURES_OK.
  bool negotiate(uint64_t features) {
    w32(kStatus, 0);
    w32(kStatus, kStatusAcknowledge);
    w32(kStatus, kStatusAcknowledge | kStatusDriver);
    read_device_features();
    w32(kDriverFeaturesSel, 1);
    w32(kDriverFeatures, static_cast<uint32_t>(features >> 32));
    w32(kDriverFeaturesSel, 0);
    w32(kDriverFeatures, static_cast<uint32_t>(features));
    w32(kStatus, r32(kStatus) | kStatusFeaturesOk);
    return (r32(kStatus) & kStatusFeaturesOk) != 0;
  }

  // vm_setup_vq for queue `index` with `size` entries at the default ring addresses.
  void setup_queue(uint32_t index, uint32_t size, uint64_t desc = 0, uint64_t avail = 0,
                   uint64_t used = 0) {
    desc = desc ? desc : desc_table(index);
    avail = avail ? avail : avail_ring(index);
    used = used ? used : used_ring(index);
    w32(kQueueSel, index);
    ASSERT_EQ(r32(kQueueReady), 0u);
    ASSERT_NE(r32(kQueueNumMax), 0u);
    w32(kQueueNum, size);
    w32(kQueueDescLow, static_cast<uint32_t>(desc));
    w32(kQueueDescHigh, static_cast<uint32_t>(desc >> 32));
    w32(kQueueAvailLow, static_cast<uint32_t>(avail));
    w32(kQueueAvailHigh, static_cast<uint32_t>(avail >> 32));
    w32(kQueueUsedLow, static_cast<uint32_t>(used));
    w32(kQueueUsedHigh, static_cast<uint32_t>(used >> 32));
    w32(kQueueReady, 1);
  }

  void driver_ok() { w32(kStatus, r32(kStatus) | kStatusDriverOk); }

  // The whole sequence Linux's virtio_mmio.c + virtio.c go through for a driver.
  void initialize(uint64_t features = kOffered) {
    const size_t activations = log.activations.size();
    ASSERT_TRUE(negotiate(features));
    setup_queue(0, 16);
    setup_queue(1, 8);
    driver_ok();
    ASSERT_EQ(log.activations.size(), activations + 1);
  }

  std::vector<uint8_t> ram;
  GuestMemory memory;
  EventLoop loop;
  devices::testing::InlineDeviceOwner owner{loop};
  DeviceLog log;
  FakeInterruptLine irq;
  std::unique_ptr<MmioTransport> transport;
};

TEST_F(MmioTransportTest, IdentityRegisters) {
  EXPECT_EQ(r32(kMagicValue), 0x74726976u);
  EXPECT_EQ(r32(kVersion), 2u);
  EXPECT_EQ(r32(kDeviceId), kFakeDeviceId);
  EXPECT_EQ(r32(kVendorId), MmioTransport::kVendorId);
  EXPECT_EQ(read_device_features(), kOffered);
  w32(kDeviceFeaturesSel, 2);
  EXPECT_EQ(r32(kDeviceFeatures), 0u);
  w32(kQueueSel, 0);
  EXPECT_EQ(r32(kQueueNumMax), 16u);
  w32(kQueueSel, 1);
  EXPECT_EQ(r32(kQueueNumMax), 8u);
  w32(kQueueSel, 2);
  EXPECT_EQ(r32(kQueueNumMax), 0u);
  EXPECT_EQ(r32(kQueueReady), 0u);
  EXPECT_EQ(r32(kStatus), 0u);
  EXPECT_EQ(r32(kInterruptStatus), 0u);
  EXPECT_EQ(r32(kConfigGeneration), 0u);
  EXPECT_EQ(r32(kShmLenLow), 0xffffffffu);  // no shared memory region
  EXPECT_EQ(transport->queue_count(), 2);
  EXPECT_EQ(transport->device().device_id(), kFakeDeviceId);
}

TEST_F(MmioTransportTest, WriteOnlyAndUnknownRegistersReadZero) {
  w32(kQueueNum, 4);
  for (uint64_t offset : {kDeviceFeaturesSel, kDriverFeatures, kDriverFeaturesSel, kQueueSel,
                          kQueueNum, kQueueNotify, kInterruptAck, kQueueDescLow, kQueueUsedHigh,
                          uint64_t{0x018}, uint64_t{0x0c0}, uint64_t{0x0f8}}) {
    EXPECT_EQ(r32(offset), 0u) << "offset " << offset;
  }
}

TEST_F(MmioTransportTest, AcceptsOfferedFeatures) {
  EXPECT_TRUE(negotiate(kFeatureVersion1 | kFeatureRingEventIdx));
  EXPECT_EQ(transport->status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
}

TEST_F(MmioTransportTest, RefusesFeatureNotOffered) {
  EXPECT_FALSE(negotiate(kOffered | (uint64_t{1} << 5)));
  EXPECT_EQ(transport->status(), kStatusAcknowledge | kStatusDriver);
  // Nothing is offered above bit 63 either.
  w32(kStatus, 0);
  w32(kStatus, kStatusAcknowledge | kStatusDriver);
  w32(kDriverFeaturesSel, 0);
  w32(kDriverFeatures, 0);
  w32(kDriverFeaturesSel, 1);
  w32(kDriverFeatures, 1);  // VERSION_1
  w32(kDriverFeaturesSel, 2);
  w32(kDriverFeatures, 1);
  w32(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(r32(kStatus) & kStatusFeaturesOk, 0u);
}

TEST_F(MmioTransportTest, RefusesDriverWithoutVersion1) {
  EXPECT_FALSE(negotiate(kFeatureRingEventIdx));
  // The driver gives up; DRIVER_OK is refused without FEATURES_OK.
  w32(kStatus, r32(kStatus) | kStatusDriverOk);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver);
  EXPECT_TRUE(log.activations.empty());
}

TEST_F(MmioTransportTest, DriverFeaturesAreFrozenByFeaturesOk) {
  ASSERT_TRUE(negotiate(kFeatureVersion1));
  w32(kDriverFeaturesSel, 0);
  w32(kDriverFeatures, static_cast<uint32_t>(kFeatureRingEventIdx | kDeviceFeatureBit0));
  setup_queue(0, 16);
  driver_ok();
  ASSERT_EQ(log.activations.size(), 1u);
  EXPECT_EQ(log.activations[0].driver_features, kFeatureVersion1);
  EXPECT_FALSE(log.activations[0].queues[0]->config().event_idx);
}

TEST_F(MmioTransportTest, LinuxInitSequenceActivatesTheDevice) {
  initialize(kFeatureVersion1 | kFeatureRingEventIdx | kDeviceFeatureBit0);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  const Activation& activation = log.activations[0];
  EXPECT_EQ(activation.driver_features,
            kFeatureVersion1 | kFeatureRingEventIdx | kDeviceFeatureBit0);
  EXPECT_NE(activation.interrupt, nullptr);
  ASSERT_EQ(activation.queues.size(), 2u);
  for (uint32_t i = 0; i < 2; ++i) {
    const SplitQueue& queue = *activation.queues[i];
    EXPECT_TRUE(queue.ready());
    EXPECT_EQ(queue.config().size, i == 0 ? 16 : 8);
    EXPECT_EQ(queue.config().desc_table, desc_table(i));
    EXPECT_EQ(queue.config().avail_ring, avail_ring(i));
    EXPECT_EQ(queue.config().used_ring, used_ring(i));
    EXPECT_TRUE(queue.config().event_idx);
    EXPECT_FALSE(queue.config().indirect_desc);  // offered, not accepted
    w32(kQueueSel, i);
    EXPECT_EQ(r32(kQueueReady), 1u);
  }
  EXPECT_EQ(log.resets, 0);
}

TEST_F(MmioTransportTest, NotifiedQueueIsLiveOnTheGuestRings) {
  log.complete_on_notify = true;
  initialize(kFeatureVersion1);
  const QueueConfig config = log.activations[0].queues[1]->config();
  virtio::testing::Driver driver(memory, config);
  driver.desc(0, 0x80000, 64, kVirtqDescFWrite);
  driver.publish(0);
  w32(kQueueNotify, 1);  // no ioeventfd: the write reaches the transport
  EXPECT_THAT(log.notifications, ElementsAre(1));
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used(0).id, 0u);
  EXPECT_EQ(r32(kInterruptStatus), 1u);
  EXPECT_EQ(irq.rising_edges(), 1);
  EXPECT_FALSE(irq.level());
}

// Notifications go to the queue's eventfd, which the device watches once active: those before
// DRIVER_OK reach it only then, coalesced into one (it finds whatever the ring holds); those for a
// queue that does not exist go nowhere.
TEST_F(MmioTransportTest, QueueNotifyWaitsForDriverOkAndNeedsAnExistingQueue) {
  ioeventfd_notify(0);
  w32(kQueueNotify, 0);
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, 16);
  ioeventfd_notify(0);
  EXPECT_TRUE(log.notifications.empty());
  driver_ok();
  EXPECT_THAT(log.notifications, ElementsAre(0));
  ioeventfd_notify(0);
  ioeventfd_notify(1);  // not set up, but it exists: the device decides
  ioeventfd_notify(2);
  ioeventfd_notify(0xffffffff);
  w32(kQueueNotify, 1);
  w32(kQueueNotify, 7);
  EXPECT_THAT(log.notifications, ElementsAre(0, 0, 1, 1));
}

TEST_F(MmioTransportTest, BadQueueSizeNeedsReset) {
  for (uint32_t size : {12u, 32u, 0u, 0x10010u}) {  // not a power of two; above max; 0; > 16 bits
    ASSERT_TRUE(negotiate(kOffered));
    irq.levels.clear();
    setup_queue(0, size);
    EXPECT_EQ(r32(kQueueReady), 0u) << size;
    EXPECT_EQ(r32(kStatus) & kStatusNeedsReset, kStatusNeedsReset) << size;
    EXPECT_EQ(r32(kInterruptStatus), 2u) << size;
    EXPECT_EQ(irq.rising_edges(), 1) << size;
  }
  // The driver carries on regardless: the device is not activated on a broken setup.
  driver_ok();
  EXPECT_TRUE(log.activations.empty());
  ioeventfd_notify(0);
  EXPECT_TRUE(log.notifications.empty());
  // A reset clears it and a correct setup then works.
  w32(kStatus, 0);
  EXPECT_EQ(r32(kStatus), 0u);
  initialize();
}

TEST_F(MmioTransportTest, RingOutsideRamNeedsReset) {
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, 16, uint64_t{1} << 40);
  EXPECT_EQ(r32(kQueueReady), 0u);
  EXPECT_TRUE(transport->status() & kStatusNeedsReset);
  w32(kStatus, 0);
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(1, 8, 0, 0, kRamSize - 8);  // used ring straddles the end of RAM
  EXPECT_EQ(r32(kQueueReady), 0u);
  EXPECT_TRUE(transport->status() & kStatusNeedsReset);
}

TEST_F(MmioTransportTest, FailedActivationNeedsReset) {
  log.throw_on_activate = true;
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, 16);
  driver_ok();
  EXPECT_TRUE(r32(kStatus) & kStatusNeedsReset);
  EXPECT_EQ(r32(kInterruptStatus), 2u);
  ioeventfd_notify(0);
  EXPECT_TRUE(log.notifications.empty());
  w32(kStatus, 0);
  EXPECT_EQ(log.resets, 0);  // never activated
}

TEST_F(MmioTransportTest, QueueRegistersAreFrozenOnceReadyOrDriverOk) {
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, 16);
  w32(kQueueNum, 4);
  w32(kQueueDescLow, 0x20000);
  w32(kQueueReady, 2);  // not a valid value
  EXPECT_EQ(r32(kQueueReady), 1u);
  // QueueReady=0 before DRIVER_OK releases the queue, which can then be set up again.
  w32(kQueueReady, 0);
  EXPECT_EQ(r32(kQueueReady), 0u);
  setup_queue(0, 8);
  driver_ok();
  ASSERT_EQ(log.activations.size(), 1u);
  const SplitQueue& queue0 = *log.activations[0].queues[0];
  EXPECT_EQ(queue0.config().size, 8);
  EXPECT_EQ(queue0.config().desc_table, desc_table(0));
  // After DRIVER_OK nothing changes a queue.
  w32(kQueueReady, 0);
  EXPECT_TRUE(queue0.ready());
  w32(kQueueSel, 1);
  w32(kQueueNum, 8);
  w32(kQueueReady, 1);
  EXPECT_EQ(r32(kQueueReady), 0u);
}

TEST_F(MmioTransportTest, QueueReadyBeforeFeaturesOkIsIgnored) {
  w32(kStatus, kStatusAcknowledge | kStatusDriver);
  w32(kQueueSel, 0);
  w32(kQueueNum, 16);
  w32(kQueueDescLow, static_cast<uint32_t>(desc_table(0)));
  w32(kQueueAvailLow, static_cast<uint32_t>(avail_ring(0)));
  w32(kQueueUsedLow, static_cast<uint32_t>(used_ring(0)));
  w32(kQueueReady, 1);
  EXPECT_EQ(r32(kQueueReady), 0u);
  EXPECT_EQ(r32(kStatus) & kStatusNeedsReset, 0u);
}

TEST_F(MmioTransportTest, StatusWritesThatClearBitsAreIgnored) {
  w32(kStatus, kStatusAcknowledge | kStatusDriver);
  w32(kStatus, kStatusAcknowledge);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver);
  w32(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFailed);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver | kStatusFailed);
  // Undefined bits are dropped.
  w32(kStatus, 0xffff0000 | kStatusAcknowledge | kStatusDriver | kStatusFailed);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver | kStatusFailed);
}

TEST_F(MmioTransportTest, WritingBackNeedsResetKeepsTheState) {
  initialize();
  log.activations[0].interrupt->signal_needs_reset();
  const uint32_t status = r32(kStatus);
  EXPECT_TRUE(status & kStatusNeedsReset);
  w32(kStatus, status | kStatusFailed);
  EXPECT_EQ(r32(kStatus), status | kStatusFailed);
  EXPECT_EQ(log.resets, 0);
}

TEST_F(MmioTransportTest, InterruptStatusAndAck) {
  initialize();
  DeviceInterrupt& interrupt = *log.activations[0].interrupt;
  interrupt.signal_used();
  EXPECT_EQ(r32(kInterruptStatus), 1u);
  EXPECT_EQ(irq.rising_edges(), 1);
  EXPECT_FALSE(irq.level());  // edge-triggered: a pulse
  interrupt.signal_config_change();
  EXPECT_EQ(r32(kInterruptStatus), 3u);
  EXPECT_EQ(r32(kConfigGeneration), 1u);
  EXPECT_EQ(irq.rising_edges(), 2);
  w32(kInterruptAck, 1);
  EXPECT_EQ(r32(kInterruptStatus), 2u);
  w32(kInterruptAck, 2);
  EXPECT_EQ(r32(kInterruptStatus), 0u);
  interrupt.signal_needs_reset();
  EXPECT_EQ(r32(kInterruptStatus), 2u);
  EXPECT_TRUE(r32(kStatus) & kStatusNeedsReset);
  EXPECT_EQ(r32(kConfigGeneration), 1u);
  EXPECT_EQ(irq.rising_edges(), 3);
}

TEST_F(MmioTransportTest, ResetRestoresInitialState) {
  initialize();
  log.activations[0].interrupt->signal_used();
  log.activations[0].interrupt->signal_needs_reset();
  w32(kDeviceFeaturesSel, 1);
  w32(kQueueSel, 1);
  w32(kStatus, 0);
  EXPECT_EQ(log.resets, 1);
  EXPECT_EQ(r32(kStatus), 0u);
  EXPECT_EQ(r32(kInterruptStatus), 0u);
  EXPECT_EQ(r32(kDeviceFeatures), static_cast<uint32_t>(kOffered));  // selector back to 0
  EXPECT_EQ(r32(kQueueNumMax), 16u);                                 // QueueSel back to 0
  for (uint32_t i = 0; i < 2; ++i) {
    w32(kQueueSel, i);
    EXPECT_EQ(r32(kQueueReady), 0u);
    EXPECT_FALSE(log.activations[0].queues[i]->ready());
  }
  ioeventfd_notify(0);
  EXPECT_TRUE(log.notifications.empty());
  // Driver features are forgotten: FEATURES_OK without writing them lacks VERSION_1.
  w32(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge | kStatusDriver);
  // A second reset of an inactive device does not reset it again; a new init activates anew.
  w32(kStatus, 0);
  EXPECT_EQ(log.resets, 1);
  initialize();
  EXPECT_EQ(log.activations.size(), 2u);
}

// The device's reset finishes later, on the loop's thread (a virtio-blk reset waiting for its
// in-flight I/O): the vCPU that wrote status 0 waits for it without holding the registers, so
// other vCPUs still read InterruptStatus and Status, and the device may still signal meanwhile.
TEST_F(MmioTransportTest, AResetFinishesOnTheLoopWhileTheWritingVcpuWaitsHoldingNothing) {
  // A real owner: the loop on a thread of its own, the vCPU waiting on a condition variable.
  struct ThreadedOwner final : DeviceOwner {
    EventLoop& loop;
    std::mutex mutex;
    std::condition_variable changed;
    explicit ThreadedOwner(EventLoop& l) : loop(l) {}
    void post(std::function<void()> work) override { loop.post(std::move(work)); }
    bool wait(const std::function<bool()>& done) override {
      std::unique_lock lock(mutex);
      return changed.wait_for(lock, std::chrono::seconds(10), done);
    }
    void wake() override {
      std::lock_guard lock(mutex);
      changed.notify_all();
    }
  };
  ThreadedOwner threaded(loop);
  DeviceLog threaded_log;
  threaded_log.loop = &loop;
  threaded_log.defer_reset_done = true;
  auto device = std::make_unique<FakeDevice>(threaded_log);
  MmioTransport threaded_transport(memory, std::move(device), irq, threaded, "virtio-fake vdy");
  auto write = [&](uint64_t offset, uint32_t value) {
    threaded_transport.write(offset, {reinterpret_cast<const uint8_t*>(&value), 4});
  };
  auto read = [&](uint64_t offset) {
    uint32_t value = 0;
    threaded_transport.read(offset, {reinterpret_cast<uint8_t*>(&value), 4});
    return value;
  };
  std::atomic<bool> loop_running{true};
  std::thread loop_thread([&] {
    while (loop_running) loop.run_once(10);
  });
  write(kStatus, kStatusAcknowledge);
  write(kStatus, kStatusAcknowledge | kStatusDriver);
  write(kDriverFeaturesSel, 1);
  write(kDriverFeatures, static_cast<uint32_t>(kFeatureVersion1 >> 32));
  write(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
  write(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
  // The device is the loop thread's: its state is looked at there.
  auto on_loop = [&](const std::function<bool()>& condition) {
    for (int i = 0; i < 1000; ++i) {
      std::atomic<int> answer{-1};
      loop.post([&] { answer = condition() ? 1 : 0; });
      while (answer.load() < 0) std::this_thread::yield();
      if (answer.load() == 1) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  };
  ASSERT_TRUE(on_loop([&] { return threaded_log.activations.size() == 1; }));
  DeviceInterrupt* interrupt = nullptr;
  on_loop([&] {
    interrupt = threaded_log.activations[0].interrupt;
    return true;
  });

  std::atomic<bool> reset_returned{false};
  std::thread vcpu([&] {
    write(kStatus, 0);
    reset_returned = true;
  });
  ASSERT_TRUE(on_loop([&] { return threaded_log.pending_reset_done != nullptr; }))
      << "the reset never reached the loop";
  // Another vCPU meanwhile: nothing it touches waits for the reset.
  interrupt->signal_used();
  EXPECT_EQ(read(kInterruptStatus), 1u);
  EXPECT_NE(read(kStatus), 0u);  // not reset yet
  write(kInterruptAck, 1);
  EXPECT_EQ(read(kInterruptStatus), 0u);
  EXPECT_FALSE(reset_returned.load());
  // The device's I/O is done: the loop reports the reset, the vCPU goes on.
  loop.post([&] { std::exchange(threaded_log.pending_reset_done, nullptr)(); });
  vcpu.join();
  EXPECT_TRUE(reset_returned.load());
  EXPECT_EQ(read(kStatus), 0u);
  EXPECT_TRUE(on_loop([&] { return !threaded_log.activations[0].queues[0]->ready(); }));
  loop_running = false;
  loop_thread.join();
}

TEST_F(MmioTransportTest, DestructionResetsAnActiveDevice) {
  initialize();
  transport.reset();
  EXPECT_EQ(log.resets, 1);
}

TEST_F(MmioTransportTest, ConfigSpaceIsReadAtAnyWidthAndNotWritable) {
  uint8_t byte = 0;
  transport->read(kConfig + 3, {&byte, 1});
  EXPECT_EQ(byte, 0x13);
  uint16_t half = 0;
  transport->read(kConfig + 6, {reinterpret_cast<uint8_t*>(&half), 2});
  EXPECT_EQ(half, 0x1716);
  EXPECT_EQ(r32(kConfig + 8), 0x1b1a1918u);
  uint64_t quad = 0;
  transport->read(kConfig, {reinterpret_cast<uint8_t*>(&quad), 8});
  EXPECT_EQ(quad, 0x1716151413121110u);
  // No device has a writable field: the write changes nothing.
  const uint16_t value = 0xbeef;
  transport->write(kConfig + 1, {reinterpret_cast<const uint8_t*>(&value), 2});
  EXPECT_EQ(log.config[1], 0x11);
  EXPECT_EQ(log.config[2], 0x12);
  EXPECT_EQ(r32(kConfig + 0x40), 0u);  // past the device's config: zeros
  // Outside the window: not forwarded.
  EXPECT_EQ(r32(MmioTransport::kWindowSize), 0u);
  quad = ~uint64_t{0};
  transport->read(MmioTransport::kWindowSize - 4, {reinterpret_cast<uint8_t*>(&quad), 8});
  EXPECT_EQ(quad, 0u);
}

TEST_F(MmioTransportTest, RegisterAccessesOtherThan32BitsAreIgnored) {
  uint8_t bytes[8];
  std::memset(bytes, 0xff, sizeof(bytes));
  transport->read(kMagicValue, {bytes, 2});
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[1], 0);
  transport->read(kMagicValue, {bytes, 8});
  EXPECT_THAT(bytes, ::testing::Each(0));
  transport->read(kMagicValue + 2, {bytes, 4});  // misaligned
  EXPECT_THAT(bytes, ::testing::Each(0));
  const uint8_t ack = kStatusAcknowledge;
  transport->write(kStatus, {&ack, 1});
  EXPECT_EQ(r32(kStatus), 0u);
  const uint64_t acknowledge_driver = kStatusAcknowledge | kStatusDriver;
  transport->write(kStatus, {reinterpret_cast<const uint8_t*>(&acknowledge_driver), 8});
  EXPECT_EQ(r32(kStatus), 0u);
  w32(kStatus, kStatusAcknowledge);
  transport->write(kStatus + 1, {&ack, 1});
  EXPECT_EQ(r32(kStatus), kStatusAcknowledge);
}

// A hostile guest: random register traffic biased towards the meaningful values, random bytes in
// RAM (so rings and descriptors are garbage), random device signals; then fakes.hpp's hammer.
TEST_F(MmioTransportTest, SurvivesHostileRegisterFuzz) {
  log.complete_on_notify = true;
  std::mt19937_64 random(0x7172);
  const uint64_t registers[] = {
      kDeviceFeaturesSel, kDriverFeatures, kDriverFeaturesSel, kQueueSel,     kQueueNum,
      kQueueReady,        kQueueNotify,    kInterruptAck,      kStatus,       kQueueDescLow,
      kQueueDescHigh,     kQueueAvailLow,  kQueueAvailHigh,    kQueueUsedLow, kQueueUsedHigh};
  auto value = [&]() -> uint32_t {
    switch (random() % 4) {
      case 0: return static_cast<uint32_t>(random() % 4);
      case 1: return static_cast<uint32_t>(1u << (random() % 32));
      case 2: return static_cast<uint32_t>(random() % kRamSize) & ~15u;
      default: return static_cast<uint32_t>(random());
    }
  };
  const size_t sizes[] = {1, 2, 4, 8};
  uint8_t buffer[8];
  for (int i = 0; i < 200000; ++i) {
    if (i % 20000 == 0) {
      for (auto& byte : ram) byte = static_cast<uint8_t>(random());
    }
    switch (random() % 8) {
      case 0:
      case 1:
      case 2: w32(registers[random() % std::size(registers)], value()); break;
      case 3: r32((random() % 0x100) & ~uint64_t{3}); break;
      case 4: {
        const uint64_t offset = random() % (MmioTransport::kWindowSize + 16);
        const size_t size = sizes[random() % 4];
        if (random() % 2) {
          transport->read(offset, {buffer, size});
        } else {
          for (auto& byte : buffer) byte = static_cast<uint8_t>(random());
          transport->write(offset, {buffer, size});
        }
        break;
      }
      case 5: ioeventfd_notify(static_cast<uint32_t>(random() % 4)); break;
      case 6:
        // A well-behaved stretch now and then, so activation and live queues are reached.
        if (random() % 64 == 0) {
          negotiate(kOffered);
          setup_queue(0, 16);
          setup_queue(1, 8);
          driver_ok();
        }
        break;
      default:
        if (!log.activations.empty() && (transport->status() & kStatusDriverOk)) {
          log.activations.back().interrupt->signal_used();
        }
        break;
    }
    const uint32_t status = transport->status();
    ASSERT_FALSE((status & kStatusDriverOk) && !(status & kStatusFeaturesOk)) << i;
  }
  EXPECT_FALSE(log.activations.empty());
  EXPECT_FALSE(log.notifications.empty());
  devices::testing::hammer(*transport, MmioTransport::kWindowSize);
}

// ---- Snapshot and restore ----

// A DeviceOwner whose loop may be parked: posted work runs at once, unless held (a pause parked
// the loop before it ran), and a vCPU does not wait for what is held.
class ParkableOwner final : public DeviceOwner {
 public:
  void post(std::function<void()> work) override {
    if (hold) {
      held.push_back(std::move(work));
    } else {
      work();
    }
  }
  bool wait(const std::function<bool()>& done) override { return done(); }
  void wake() override {}

  bool hold = false;
  std::vector<std::function<void()>> held;
};

// A fresh machine's transport over a copy of the snapshot's RAM, with its own device and loop.
struct RestoredTransport {
  explicit RestoredTransport(const std::vector<uint8_t>& snapshot_ram) : ram(snapshot_ram) {
    log.loop = &loop;
    log.complete_on_notify = true;
  }
  uint32_t r32(uint64_t offset) {
    uint32_t value = 0xdeadbeef;
    transport.read(offset, {reinterpret_cast<uint8_t*>(&value), sizeof(value)});
    return value;
  }
  void restore(const std::vector<uint8_t>& bytes) {
    StateReader in(bytes, "virtio-fake vdz");
    transport.restore_state(in);
    in.expect_end();
  }

  std::vector<uint8_t> ram;
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  EventLoop loop;
  devices::testing::InlineDeviceOwner owner{loop};
  DeviceLog log;
  FakeInterruptLine irq;
  MmioTransport transport{memory, std::make_unique<FakeDevice>(log), irq, owner, "virtio-fake vdz"};
};

template <typename T>
void patch(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

// Offsets in MmioTransport::save_state's layout, for the fake's two queues.
constexpr size_t kSavedDeviceId = 0, kSavedQueueCount = 4, kSavedStatus = 8,
                 kSavedDriverFeatures = 20, kSavedQueue0Desc = 37, kSavedQueue1Ready = 90,
                 kSavedResetting = 91, kSavedInterruptStatus = 92, kSavedActive = 101;

class MmioTransportStateTest : public MmioTransportTest {
 protected:
  std::vector<uint8_t> saved() const {
    StateWriter out;
    transport->save_state(out);
    return out.take();
  }

  // The Status, selectors, features and queue registers as the driver reads them.
  static std::vector<uint32_t> registers(const std::function<uint32_t(uint64_t)>& read,
                                         const std::function<void(uint64_t, uint32_t)>& write) {
    std::vector<uint32_t> values = {read(kStatus),           read(kInterruptStatus),
                                    read(kConfigGeneration), read(kDeviceFeatures),
                                    read(kQueueNumMax),      read(kQueueReady)};
    for (uint32_t queue = 0; queue < 2; ++queue) {
      write(kQueueSel, queue);
      values.push_back(read(kQueueReady));
    }
    return values;
  }
  std::vector<uint32_t> registers() {
    return registers([&](uint64_t offset) { return r32(offset); },
                     [&](uint64_t offset, uint32_t value) { w32(offset, value); });
  }
  static std::vector<uint32_t> registers(RestoredTransport& restored) {
    return registers(
        [&](uint64_t offset) { return restored.r32(offset); },
        [&](uint64_t offset, uint32_t value) {
          restored.transport.write(offset, {reinterpret_cast<const uint8_t*>(&value), 4});
        });
  }

  void expect_corrupt(const std::vector<uint8_t>& bytes, const std::string& reason) {
    RestoredTransport restored(ram);
    try {
      restored.restore(bytes);
      ADD_FAILURE() << "accepted, expected: " << reason;
    } catch (const Error& error) {
      EXPECT_THAT(error.what(), ::testing::HasSubstr(reason));
    }
  }
};

TEST_F(MmioTransportStateTest, AnActiveTransportWithAPendingInterruptCarriesOnAfterARestore) {
  log.complete_on_notify = true;
  log.own_state = 0x5eed;
  initialize(kFeatureVersion1 | kFeatureRingEventIdx | kDeviceFeatureBit0);
  virtio::testing::Driver driver(memory, log.activations[0].queues[1]->config());
  driver.desc(0, 0x80000, 64, kVirtqDescFWrite);
  driver.publish(0);
  ioeventfd_notify(1);
  log.activations[0].interrupt->signal_config_change();
  ASSERT_EQ(r32(kInterruptStatus), 3u);  // not acknowledged: the guest has yet to see it
  w32(kDeviceFeaturesSel, 1);
  w32(kQueueSel, 1);
  const std::vector<uint8_t> bytes = saved();

  RestoredTransport restored(ram);
  restored.restore(bytes);
  // The device was activated with the restored queues before it read its own state.
  ASSERT_EQ(restored.log.activations.size(), 1u);
  EXPECT_EQ(restored.log.activations_at_restore, 1u);
  EXPECT_EQ(restored.log.restored_own_state, 0x5eedu);
  const Activation& activation = restored.log.activations[0];
  EXPECT_EQ(activation.driver_features, log.activations[0].driver_features);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(activation.queues[i]->debug_state(), log.activations[0].queues[i]->debug_state());
  }
  // The interrupt is raised again, once.
  EXPECT_EQ(restored.irq.rising_edges(), 1);
  EXPECT_EQ(registers(restored), registers());
  // Once its loop runs, the device is notified on every queue: the old ones' notifications are
  // gone with the old process.
  devices::testing::run_until_idle(restored.loop);
  EXPECT_THAT(restored.log.notifications, ElementsAre(0, 1));

  // The next request: the same used ring on both, and an interrupt from each.
  virtio::testing::Driver restored_driver(restored.memory, activation.queues[1]->config());
  restored_driver.set_avail_idx(1);
  for (virtio::testing::Driver* d : {&driver, &restored_driver}) {
    d->desc(1, 0x80100, 32, kVirtqDescFWrite);
    d->publish(1);
    d->set_used_event(1);  // EVENT_IDX: an interrupt for this entry
  }
  ioeventfd_notify(1);
  const uint64_t one = 1;
  ASSERT_EQ(::write(restored.transport.notify_fd(1), &one, 8), 8);
  devices::testing::run_until_idle(restored.loop);
  EXPECT_EQ(restored_driver.used_idx(), 2);
  EXPECT_EQ(restored_driver.used(1).id, driver.used(1).id);
  EXPECT_EQ(restored.irq.rising_edges(), 2);
  EXPECT_EQ(restored.r32(kInterruptStatus), r32(kInterruptStatus));
  // And both reset alike.
  const uint32_t zero = 0;
  restored.transport.write(kStatus, {reinterpret_cast<const uint8_t*>(&zero), 4});
  EXPECT_EQ(restored.log.resets, 1);
  EXPECT_EQ(restored.r32(kStatus), 0u);
}

TEST_F(MmioTransportStateTest, ATransportMidNegotiationIsRestoredInactiveAndFinishesItsSetUp) {
  ASSERT_TRUE(negotiate(kFeatureVersion1 | kDeviceFeatureBit0));
  setup_queue(0, 16);
  RestoredTransport restored(ram);
  restored.restore(saved());
  EXPECT_TRUE(restored.log.activations.empty());
  EXPECT_FALSE(restored.log.restored_own_state.has_value());
  EXPECT_EQ(restored.irq.rising_edges(), 0);
  EXPECT_EQ(registers(restored), registers());
  auto write = [&](uint64_t offset, uint32_t value) {
    restored.transport.write(offset, {reinterpret_cast<const uint8_t*>(&value), 4});
  };
  write(kQueueSel, 1);
  write(kQueueNum, 8);
  write(kQueueDescLow, static_cast<uint32_t>(desc_table(1)));
  write(kQueueAvailLow, static_cast<uint32_t>(avail_ring(1)));
  write(kQueueUsedLow, static_cast<uint32_t>(used_ring(1)));
  write(kQueueReady, 1);
  write(kStatus, restored.r32(kStatus) | kStatusDriverOk);
  ASSERT_EQ(restored.log.activations.size(), 1u);
  EXPECT_EQ(restored.log.activations[0].driver_features, kFeatureVersion1 | kDeviceFeatureBit0);
  EXPECT_EQ(restored.log.activations[0].queues[0]->config().desc_table, desc_table(0));
}

// DRIVER_OK reached the transport, but the pause parked the loop before the activation ran.
TEST_F(MmioTransportStateTest, AnActivationTheLoopHadNotRunIsRunByTheRestore) {
  ParkableOwner parkable;
  transport = std::make_unique<MmioTransport>(memory, std::make_unique<FakeDevice>(log), irq,
                                              parkable, "virtio-fake vdz");
  ASSERT_TRUE(negotiate(kOffered));
  setup_queue(0, 16);
  setup_queue(1, 8);
  parkable.hold = true;
  driver_ok();
  EXPECT_TRUE(log.activations.empty());
  RestoredTransport restored(ram);
  restored.restore(saved());
  ASSERT_EQ(restored.log.activations.size(), 1u);
  EXPECT_FALSE(restored.log.restored_own_state.has_value());  // it had none yet
  EXPECT_TRUE(restored.log.activations[0].queues[1]->ready());
  devices::testing::run_until_idle(restored.loop);
  EXPECT_THAT(restored.log.notifications, ElementsAre(0, 1));
  transport.reset();
}

// A vCPU wrote status 0 and waits for the device's reset, which the parked loop had not run: the
// vCPU saw its write done, so the restore completes the reset.
TEST_F(MmioTransportStateTest, AResetUnderWayIsCompletedByTheRestore) {
  ParkableOwner parkable;
  transport = std::make_unique<MmioTransport>(memory, std::make_unique<FakeDevice>(log), irq,
                                              parkable, "virtio-fake vdz");
  initialize();
  log.activations[0].interrupt->signal_used();
  parkable.hold = true;
  w32(kStatus, 0);
  ASSERT_NE(r32(kStatus), 0u);  // not reset yet
  RestoredTransport restored(ram);
  restored.restore(saved());
  EXPECT_TRUE(restored.log.activations.empty());
  EXPECT_EQ(restored.r32(kStatus), 0u);
  EXPECT_EQ(restored.r32(kInterruptStatus), 0u);
  EXPECT_EQ(restored.irq.rising_edges(), 0);
  for (uint32_t queue = 0; queue < 2; ++queue) {
    const uint32_t value = queue;
    restored.transport.write(kQueueSel, {reinterpret_cast<const uint8_t*>(&value), 4});
    EXPECT_EQ(restored.r32(kQueueReady), 0u);
  }
  transport.reset();
}

TEST_F(MmioTransportStateTest, TruncatedStateThrows) {
  initialize();
  const std::vector<uint8_t> bytes = saved();
  for (size_t size = 0; size < bytes.size(); ++size) {
    expect_corrupt({bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)}, "truncated");
  }
}

TEST_F(MmioTransportStateTest, CorruptValuesThrow) {
  initialize(kFeatureVersion1 | kFeatureRingEventIdx);
  const std::vector<uint8_t> good = saved();
  auto with = [&](auto change) {
    std::vector<uint8_t> bytes = good;
    change(bytes);
    return bytes;
  };
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedDeviceId, kDeviceIdNet); }),
                 "saved from virtio device type 1, restored into type 2");
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedQueueCount, 3); }),
                 "saved with 3 queue(s), the device has 2");
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedStatus, 0x10f); }),
                 "bits a driver cannot set");
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedStatus, kStatusDriverOk | 3); }),
                 "DRIVER_OK without FEATURES_OK");
  expect_corrupt(
      with([](auto& b) { patch<uint64_t>(b, kSavedDriverFeatures, kFeatureVersion1 | 2); }),
      "are not a modern subset");
  expect_corrupt(with([](auto& b) { patch<uint64_t>(b, kSavedDriverFeatures, 1); }),
                 "are not a modern subset");
  expect_corrupt(with([](auto& b) { patch<uint64_t>(b, kSavedQueue0Desc, kRamSize); }),
                 "queue 0: virtqueue descriptor table");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedQueue1Ready, 0); }),
                 "queue 1 does not match its registers");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedResetting, 1); }),
                 "active without DRIVER_OK, or while being reset");
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedInterruptStatus, 4); }),
                 "InterruptStatus is out of range");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedActive, 0); }),
                 "state of a device that was not active");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedActive, 3); }), "neither 0 nor 1");
  // The queue's own state: its size no longer matches the registers'.
  expect_corrupt(with([](auto& b) { patch<uint16_t>(b, kSavedActive + 2, 8); }),
                 "queue 0 does not match its registers");
  expect_corrupt(with([](auto& b) { b.push_back(0); }), "1 unexpected bytes at the end");
}

TEST_F(MmioTransportStateTest, OnlyAFreshTransportIsRestored) {
  initialize();
  const std::vector<uint8_t> bytes = saved();
  StateReader in(bytes, "virtio-fake vdz");
  EXPECT_THAT([&] { transport->restore_state(in); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("already in use")));
}

}  // namespace
}  // namespace vmm::devices::virtio
