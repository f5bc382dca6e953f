#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "base/memory/guest_memory.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::devices::virtio::testing {

// Where the device tests put queue `index`'s rings: 0x5000 bytes a queue from 0x1000 (for up to
// 256 entries: a 4 KiB descriptor table, the avail ring at +0x2000, the used ring at +0x3000),
// so three queues' rings lie below 0x10000.
inline QueueConfig queue_config(uint16_t index, uint16_t size, bool event_idx = false) {
  const uint64_t base = 0x1000 + 0x5000ull * index;
  return QueueConfig{.size = size,
                     .desc_table = base,
                     .avail_ring = base + 0x2000,
                     .used_ring = base + 0x3000,
                     .event_idx = event_idx,
                     .indirect_desc = true};
}

// Counts what the device signals.
class FakeDeviceInterrupt final : public DeviceInterrupt {
 public:
  void signal_used() override { ++used; }
  void signal_config_change() override { ++config_changes; }
  void signal_needs_reset() override { ++needs_reset; }
  int used = 0;
  int config_changes = 0;
  int needs_reset = 0;
};

// Plays the driver: writes descriptors and rings into the fake RAM the way virtio_ring.c does.
class Driver {
 public:
  Driver(const GuestMemory& memory, const QueueConfig& config)
      : memory_(&memory), config_(config) {}

  // Starts over on `config`'s rings, as a driver does after a device reset.
  void restart(const QueueConfig& config) {
    config_ = config;
    avail_idx_ = 0;
  }

  void desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0) {
    desc_at(config_.desc_table, index, addr, len, flags, next);
  }
  void desc_at(uint64_t table, uint16_t index, uint64_t addr, uint32_t len, uint16_t flags = 0,
               uint16_t next = 0) {
    ASSERT_TRUE(memory_->write_obj(table + 16ull * index, VirtqDesc{addr, len, flags, next}));
  }
  // Makes `head` available and publishes the new avail->idx.
  void publish(uint16_t head) {
    write16(config_.avail_ring + 4 + 2ull * (avail_idx_ & (config_.size - 1)), head);
    set_avail_idx(avail_idx_ + 1);
  }
  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    write16(config_.avail_ring + 2, idx);
  }
  void set_avail_flags(uint16_t flags) { write16(config_.avail_ring, flags); }
  void set_used_event(uint16_t idx) { write16(config_.avail_ring + 4 + 2ull * config_.size, idx); }
  uint16_t avail_event() const { return read16(config_.used_ring + 4 + 8ull * config_.size); }
  uint16_t used_idx() const { return read16(config_.used_ring + 2); }
  VirtqUsedElem used(uint16_t idx) const {
    return *memory_->read_obj<VirtqUsedElem>(config_.used_ring + 4 +
                                             8ull * (idx & (config_.size - 1)));
  }

 private:
  void write16(uint64_t gpa, uint16_t value) { ASSERT_TRUE(memory_->write_obj(gpa, value)); }
  uint16_t read16(uint64_t gpa) const { return *memory_->read_obj<uint16_t>(gpa); }

  const GuestMemory* memory_;
  QueueConfig config_;
  uint16_t avail_idx_ = 0;
};

// Activates `queue` (afresh: activate() resets it) on queue_config(index, ...) and restarts
// `driver` on the same rings.
inline void activate_queue(SplitQueue& queue, Driver& driver, uint16_t index, bool event_idx) {
  const QueueConfig config = queue_config(index, queue.max_size(), event_idx);
  queue.activate(config);
  driver.restart(config);
}

}  // namespace vmm::devices::virtio::testing
