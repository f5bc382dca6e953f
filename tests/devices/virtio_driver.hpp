#pragma once

#include <gtest/gtest.h>

#include <cstdint>

#include "devices/virtio/queue.hpp"
#include "vmm/memory/guest_memory.hpp"

namespace vmm::devices::virtio::testing {

// Plays the driver: writes descriptors and rings into the fake RAM the way virtio_ring.c does.
class Driver {
 public:
  Driver(const GuestMemory& memory, const QueueConfig& config)
      : memory_(&memory), config_(config) {}

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

}  // namespace vmm::devices::virtio::testing
