#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/memory/guest_memory.hpp"

namespace vmm::devices::virtio {

class SplitQueue;

// One guest buffer of a descriptor chain, already checked to lie inside guest memory.
struct Buffer {
  uint64_t addr;
  uint32_t len;
  bool writable;  // device-writable (VIRTQ_DESC_F_WRITE); otherwise device-readable

  bool operator==(const Buffer&) const = default;
};

// A descriptor chain popped from a SplitQueue: a snapshot of its buffers, validated when it was
// popped, so a guest rewriting the descriptor table afterwards cannot change what the device sees.
// Readable buffers come first, then writable ones; zero-length descriptors are left out.
//
// Move-only, and it must be handed back exactly once with SplitQueue::add_used() or fill_used()
// (or, on a device reset, discard()): the driver waits for every chain it made available. A chain
// destroyed while still pending is a device bug; it is logged as an error (not asserted, so a
// release build keeps the VM running), because the guest will then wait forever for that request.
class DescriptorChain {
 public:
  DescriptorChain(DescriptorChain&& other) noexcept;
  DescriptorChain& operator=(DescriptorChain&& other) noexcept;
  DescriptorChain(const DescriptorChain&) = delete;
  DescriptorChain& operator=(const DescriptorChain&) = delete;
  ~DescriptorChain();

  // Index of the head descriptor: what the used ring reports back to the driver.
  uint16_t head() const { return head_; }

  std::span<const Buffer> buffers() const { return buffers_; }
  auto begin() const { return buffers_.cbegin(); }
  auto end() const { return buffers_.cend(); }

  // Totals fit in u32: pop() refuses chains whose total length overflows it.
  uint32_t readable_bytes() const { return readable_bytes_; }
  uint32_t writable_bytes() const { return writable_bytes_; }

  // Copies the device-readable bytes starting `offset` bytes into the readable part, across
  // buffer boundaries, into `out`. Returns how many bytes were copied (less than out.size() when
  // the readable part ends first).
  size_t read(uint64_t offset, std::span<uint8_t> out) const;
  // Copies `in` into the device-writable part starting `offset` bytes into it. Returns how many
  // bytes were copied (less than in.size() when the writable part ends first).
  size_t write(uint64_t offset, std::span<const uint8_t> in) const;

  // Gives the chain up without completing it: for device reset, when the driver no longer expects
  // the buffers back.
  void discard() && { pending_ = false; }

 private:
  friend class SplitQueue;

  DescriptorChain(const GuestMemory& memory, const SplitQueue* queue, uint64_t generation,
                  uint16_t head, std::vector<Buffer> buffers);
  void report_if_pending() const;

  const GuestMemory* memory_;
  const SplitQueue* queue_;  // identity only (never dereferenced): add_used() checks it
  uint64_t generation_;      // the queue's generation at pop time; see SplitQueue::reset()
  uint16_t head_;
  std::vector<Buffer> buffers_;
  uint32_t readable_bytes_ = 0;
  uint32_t writable_bytes_ = 0;
  bool pending_ = true;
};

}  // namespace vmm::devices::virtio
