#pragma once

// What the virtio device targets (block, net, vsock) share: the driver's side of the device (its
// queues, one QueueDriver each, the interrupt the device signals, activation and reset), the
// driver operations whose encoding they have in common, and running the event loop dry.

#include <cstdint>
#include <memory>
#include <vector>

#include "base/event/event_loop.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {

// `count` queues of `size` entries (at most 256), queue q's rings at 0x3000 q: the descriptor
// table, the avail ring at +0x1000 and the used ring at +0x2000. The device's data area must start
// above them.
inline std::vector<devices::virtio::QueueConfig> stacked_queues(int count, uint16_t size) {
  std::vector<devices::virtio::QueueConfig> configs;
  for (int q = 0; q < count; ++q) {
    const uint64_t base = 0x3000ull * q;
    configs.push_back({.size = size,
                       .desc_table = base,
                       .avail_ring = base + 0x1000,
                       .used_ring = base + 0x2000});
  }
  return configs;
}

// The guest driver's side of one virtio device: a SplitQueue per configured queue, the
// QueueDriver that writes its rings, and the interrupt the device signals.
class GuestDriver {
 public:
  GuestDriver(const GuestMemory& memory, const std::vector<devices::virtio::QueueConfig>& configs) {
    for (const devices::virtio::QueueConfig& config : configs) {
      queues_.push_back(std::make_unique<devices::virtio::SplitQueue>(memory, config.size));
      drivers_.emplace_back(memory, config);
    }
  }

  devices::virtio::SplitQueue& queue(size_t q) { return *queues_[q]; }
  QueueDriver& driver(size_t q) { return drivers_[q]; }

  // Sets the queues up with the ring features `features` negotiated and activates `device`.
  void activate(devices::virtio::VirtioDevice& device, uint64_t features) {
    features_ = features;
    std::vector<devices::virtio::SplitQueue*> queues;
    for (size_t q = 0; q < queues_.size(); ++q) {
      devices::virtio::QueueConfig config = drivers_[q].config();
      config.event_idx = (features & devices::virtio::kFeatureRingEventIdx) != 0;
      config.indirect_desc = (features & devices::virtio::kFeatureRingIndirectDesc) != 0;
      queues_[q]->activate(config);
      queues.push_back(queues_[q].get());
    }
    device.activate(devices::virtio::Activation{features, std::move(queues), &interrupt_});
  }

  // The driver resets the device and sets it up again, same features, on clean rings.
  void reset(devices::virtio::VirtioDevice& device, EventLoop& loop) {
    bool done = false;
    device.reset([&done] { done = true; });
    // A device waiting for its I/O finishes the reset on the loop (bounded: a device that never
    // does is caught by the check below).
    for (int round = 0; round < 64 && !done; ++round) loop.run_once(10);
    VMM_FUZZ_CHECK(done, "the device never finished its reset");
    for (size_t q = 0; q < queues_.size(); ++q) {
      queues_[q]->reset();
      drivers_[q].restart();
    }
    activate(device, features_);
  }

  void check_used() {
    for (QueueDriver& driver : drivers_) driver.check_used();
  }

  // Once the device has run out of work, every chain made available on queue `q` (`what` names
  // them) must be back in the used ring, unless the queue broke.
  void check_all_returned(size_t q, const char* what) {
    if (queues_[q]->broken()) return;
    const QueueDriver& driver = drivers_[q];
    VMM_FUZZ_CHECK(driver.used_total() == driver.published_total(),
                   "%llu %s made available, %llu returned",
                   static_cast<unsigned long long>(driver.published_total()), what,
                   static_cast<unsigned long long>(driver.used_total()));
  }

 private:
  std::vector<std::unique_ptr<devices::virtio::SplitQueue>> queues_;
  std::vector<QueueDriver> drivers_;
  FakeDeviceInterrupt interrupt_;
  uint64_t features_ = 0;
};

// A raw descriptor: u8 index, u32 address choice (pick_address), u32 len, u16 flags, u16 next.
inline void write_desc(Reader& in, QueueDriver& driver, uint64_t data_base, uint64_t ram_size) {
  const uint8_t index = in.u8();
  const uint64_t addr = pick_address(in, data_base, ram_size);
  const uint32_t len = in.u32();
  const uint16_t flags = in.u16();
  driver.desc(index, addr, len, flags, in.u16());
}

// Bytes in the data area (`data_base` to the end of RAM): u32 offset into it, u8 n, n bytes.
inline void write_data(Reader& in, FuzzRam& ram, uint64_t data_base) {
  const uint64_t offset = in.u32() % (ram.size() - data_base);
  ram.write_clamped(data_base + offset, in.bytes(in.u8()));
}

// Runs the loop until a round dispatches nothing (bounded: a device that keeps itself busy must
// not hang the target).
using devices::testing::run_until_idle;

}  // namespace vmm::fuzz
