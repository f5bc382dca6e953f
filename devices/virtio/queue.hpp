#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/util/state_stream.hpp"
#include "devices/virtio/descriptor_chain.hpp"

namespace vmm::devices::virtio {

// Guest-visible layout of a split virtqueue (virtio 1.2, 2.7), little-endian like the x86 host.
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

inline constexpr uint16_t kVirtqDescFNext = 1;
inline constexpr uint16_t kVirtqDescFWrite = 2;
inline constexpr uint16_t kVirtqDescFIndirect = 4;
inline constexpr uint16_t kVirtqAvailFNoInterrupt = 1;
inline constexpr uint16_t kMaxQueueSize = 32768;

// Bytes of each area for a queue of `size` entries; the rings include the event-idx fields.
constexpr uint64_t desc_table_bytes(uint16_t size) {
  return 16ull * size;
}
constexpr uint64_t avail_ring_bytes(uint16_t size) {
  return 6 + 2ull * size;
}
constexpr uint64_t used_ring_bytes(uint16_t size) {
  return 6 + 8ull * size;
}

// What the driver sets up before making the queue ready (and the features it negotiated).
struct QueueConfig {
  uint16_t size = 0;
  uint64_t desc_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
  bool event_idx = false;      // VIRTIO_F_RING_EVENT_IDX
  bool indirect_desc = false;  // VIRTIO_F_RING_INDIRECT_DESC

  bool operator==(const QueueConfig&) const = default;
};

// The device side of one split virtqueue.
//
// The guest is hostile: every index, address and length it supplies is checked, and guest RAM is
// touched only through GuestMemory. The first violation makes the queue broken, a sticky state
// (until reset()) in which nothing more is popped or completed; the transport turns it into
// VIRTIO_CONFIG_S_NEEDS_RESET and can log broken_reason().
//
// Threading: not synchronised. A queue belongs to the thread that owns its device (the machine's
// event loop): activate(), reset() and everything in between run there. The guest's vCPUs
// write the rings concurrently; the fences in pop() and publish_used() order our accesses against
// theirs as the spec's memory barriers require. A snapshot saves it on the thread that paused the
// machine, standing in for the owner; a restore runs on the thread that builds the machine,
// before its loop and vCPUs run.
class SplitQueue {
 public:
  // `memory` must outlive the queue and every chain popped from it. `max_size` is what the
  // device offers (QueueNumMax), a power of two.
  SplitQueue(const GuestMemory& memory, uint16_t max_size);
  SplitQueue(const SplitQueue&) = delete;
  SplitQueue& operator=(const SplitQueue&) = delete;

  uint16_t max_size() const { return max_size_; }

  // The driver made the queue ready: checks `config` (size a power of two no larger than
  // max_size(); each area inside guest memory with the spec's alignment) and starts using it.
  // Throws vmm::Error naming the bad field, leaving the queue not ready.
  void activate(const QueueConfig& config);
  // activate()'s checks alone, for the transport to refuse a bad queue when the driver makes it
  // ready (on a vCPU thread, without touching the queue, which the device's thread owns).
  static void check(const GuestMemory& memory, uint16_t max_size, const QueueConfig& config);
  bool ready() const { return ready_; }
  const QueueConfig& config() const { return config_; }

  // Back to the state before activate(): not ready, not broken, indices at 0. Chains popped
  // before the reset are stale: add_used() ignores them.
  void reset();

  bool broken() const { return broken_; }
  const std::string& broken_reason() const { return broken_reason_; }

  // The next available chain, or nullopt if there is none, the queue is not ready, or it is (or
  // just became) broken: check broken() to tell them apart. With EVENT_IDX, finding the queue
  // drained publishes avail_event so that the driver's next buffer notifies the device.
  std::optional<DescriptorChain> pop();

  // Returns `chain` to the driver through the used ring, reporting `bytes_written` bytes written
  // into its writable part (clamped to that part's size). A stale chain (popped before reset())
  // is dropped, and nothing is written to a broken queue. A chain already returned (a moved-from
  // one included) or popped from another queue is refused and logged: a device bug that must not
  // corrupt the guest's used ring.
  void add_used(DescriptorChain&& chain, uint32_t bytes_written) {
    fill_used(std::move(chain), bytes_written);
    publish_used();
  }
  // add_used() in two steps, for chains the driver must see together: fill_used() writes the used
  // entry, publish_used() the used->idx that makes every filled entry visible at once. A
  // mergeable receive packet's buffers are such a group: Linux drops a packet whose first buffer
  // it finds without the rest ("buffers missing").
  void fill_used(DescriptorChain&& chain, uint32_t bytes_written);
  void publish_used();

  // Whether the driver wants an interrupt for the used entries published since the last call:
  // VIRTQ_AVAIL_F_NO_INTERRUPT without EVENT_IDX, used_event with it. False if none were added.
  bool needs_notification();

  // "size 256, avail idx 12 (popped 12), used idx 10" (or "not ready", ", broken: ..."), for logs.
  std::string debug_state() const;

  // Chains popped and not yet returned.
  uint16_t chains_in_use() const { return static_cast<uint16_t>(next_avail_ - next_used_); }

  // Snapshot: the configuration, whether ready and broken (and why), and the ring indices.
  void save_state(StateWriter& out) const;
  // Restore, into a queue of the same max_size(): reset(), then what save_state() wrote, with the
  // configuration checked against guest memory as activate() checks it and the indices checked
  // for consistency; throws vmm::Error (StateReader::corrupt) on a bad value.
  void restore_state(StateReader& in);

  // The chains a device holds across a snapshot (popped, not yet returned), saved by their heads
  // in the device's state.
  static void save_chains(StateWriter& out, std::span<const DescriptorChain> chains);
  // Reads them back, after restore_state(), and reads each chain again from the descriptor table
  // with pop()'s checks (a chain the guest spoiled meanwhile breaks the queue, as pop() would, and
  // ends the list). They must be the chains in use, at most `max_chains`; a broken queue returns
  // none (it completes nothing). Throws vmm::Error (StateReader::corrupt) on a bad count or head.
  std::vector<DescriptorChain> restore_chains(StateReader& in, size_t max_chains);

 private:
  void mark_broken(std::string reason);
  // Entries the driver has made available beyond next_avail_, or nullopt if that breaks the queue.
  std::optional<uint16_t> available();
  std::optional<DescriptorChain> read_chain(uint16_t head);

  const GuestMemory& memory_;
  const uint16_t max_size_;
  QueueConfig config_;
  bool ready_ = false;
  bool broken_ = false;
  std::string broken_reason_;
  uint16_t next_avail_ = 0;      // next avail ring slot to consume (free-running, wraps at 2^16)
  uint16_t next_used_ = 0;       // the used ring slot fill_used() writes next
  uint16_t published_used_ = 0;  // our copy of used->idx
  uint32_t added_since_notify_ = 0;
  uint64_t generation_ = 0;
};

// The chain a device holds in `chain`, if any, as save_chains() takes it.
inline std::span<const DescriptorChain> held(const std::optional<DescriptorChain>& chain) {
  return chain ? std::span<const DescriptorChain>(&*chain, 1) : std::span<const DescriptorChain>();
}

}  // namespace vmm::devices::virtio
