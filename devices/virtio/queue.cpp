#include "devices/virtio/queue.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <utility>
#include <vector>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

namespace {

// Ring field offsets (virtio 1.2, 2.7.6 and 2.7.8).
constexpr uint64_t kRingIdx = 2;
constexpr uint64_t kRingEntries = 4;

// A broken queue's reason is one line of ours; a longer one in saved state is corrupt.
constexpr size_t kMaxBrokenReason = 1024;

bool is_power_of_two(uint32_t value) {
  return value != 0 && (value & (value - 1)) == 0;
}

void check_area(const GuestMemory& memory, const char* name, uint64_t addr, uint64_t bytes,
                uint64_t alignment) {
  if (addr % alignment != 0) {
    fail("virtqueue {} at {:#x} is not {}-byte aligned", name, addr, alignment);
  }
  if (!memory.contains(addr, bytes)) {
    fail("virtqueue {} at {:#x} ({} bytes) is outside guest memory", name, addr, bytes);
  }
}

}  // namespace

SplitQueue::SplitQueue(const GuestMemory& memory, uint16_t max_size)
    : memory_(memory), max_size_(max_size) {
  if (!is_power_of_two(max_size) || max_size > kMaxQueueSize) {
    fail("virtqueue maximum size {} is not a power of two in 1..{}", max_size, kMaxQueueSize);
  }
}

void SplitQueue::check(const GuestMemory& memory, uint16_t max_size, const QueueConfig& config) {
  if (!is_power_of_two(config.size) || config.size > max_size) {
    fail("virtqueue size {} is not a power of two in 1..{}", config.size, max_size);
  }
  check_area(memory, "descriptor table", config.desc_table, desc_table_bytes(config.size), 16);
  check_area(memory, "available ring", config.avail_ring, avail_ring_bytes(config.size), 2);
  check_area(memory, "used ring", config.used_ring, used_ring_bytes(config.size), 4);
}

void SplitQueue::activate(const QueueConfig& config) {
  reset();
  check(memory_, max_size_, config);
  config_ = config;
  ready_ = true;
}

void SplitQueue::reset() {
  config_ = QueueConfig{};
  ready_ = false;
  broken_ = false;
  broken_reason_.clear();
  next_avail_ = 0;
  next_used_ = 0;
  published_used_ = 0;
  added_since_notify_ = 0;
  ++generation_;
}

void SplitQueue::mark_broken(std::string reason) {
  broken_ = true;
  broken_reason_ = std::move(reason);
}

std::optional<uint16_t> SplitQueue::available() {
  // The rings were checked at activation, so these reads cannot fail; a failure would still only
  // break the queue.
  auto idx = memory_.read_obj<uint16_t>(config_.avail_ring + kRingIdx);
  // Pairs with the driver's write barrier before it publishes avail->idx: the ring entries and
  // descriptors it covers are read after this.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (!idx) {
    mark_broken("available ring is unreadable");
    return std::nullopt;
  }
  const uint16_t pending = static_cast<uint16_t>(*idx - next_avail_);
  if (pending > config_.size) {
    mark_broken(fmt::format("avail->idx moved from {} to {}, more than the queue size {}",
                            next_avail_, *idx, config_.size));
    return std::nullopt;
  }
  return pending;
}

std::optional<DescriptorChain> SplitQueue::pop() {
  if (!ready_ || broken_) return std::nullopt;
  auto pending = available();
  if (!pending) return std::nullopt;
  if (*pending == 0) {
    if (!config_.event_idx) return std::nullopt;
    // Drained: ask for a notification when the driver makes slot next_avail_ available, then look
    // again, since the driver may have added a buffer before it could see avail_event.
    const uint64_t avail_event =
        config_.used_ring + kRingEntries + sizeof(VirtqUsedElem) * config_.size;
    memory_.write_obj<uint16_t>(avail_event, next_avail_);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    pending = available();
    if (!pending || *pending == 0) return std::nullopt;
  }
  const uint16_t slot = next_avail_ & (config_.size - 1);
  auto head = memory_.read_obj<uint16_t>(config_.avail_ring + kRingEntries + 2ull * slot);
  if (!head) {
    mark_broken("available ring is unreadable");
    return std::nullopt;
  }
  ++next_avail_;
  return read_chain(*head);
}

std::optional<DescriptorChain> SplitQueue::read_chain(uint16_t head) {
  const uint16_t size = config_.size;
  uint64_t table = config_.desc_table;
  uint64_t table_entries = size;
  bool in_indirect = false;
  uint64_t index = head;
  uint64_t visited = 0;       // in the current table: more than it holds means a loop
  uint32_t chain_length = 0;  // buffer descriptors: the spec caps a chain at the queue size
  uint64_t total = 0;
  bool seen_writable = false;
  std::vector<Buffer> buffers;

  auto broken = [&](fmt::string_view what, const auto&... args) {
    mark_broken(fmt::format("descriptor chain {}: {} {}: {}", head,
                            in_indirect ? "indirect entry" : "descriptor", index,
                            fmt::vformat(what, fmt::make_format_args(args...))));
    return std::nullopt;
  };

  if (index >= size) return broken("index >= queue size {}", size);
  for (;;) {
    if (++visited > table_entries) return broken("the chain loops");
    auto desc = memory_.read_obj<VirtqDesc>(table + sizeof(VirtqDesc) * index);
    if (!desc) return broken("descriptor is unreadable");

    if (desc->flags & kVirtqDescFIndirect) {
      if (!config_.indirect_desc) return broken("INDIRECT without VIRTIO_F_RING_INDIRECT_DESC");
      if (in_indirect) return broken("nested indirect table");
      if (desc->flags & kVirtqDescFNext) return broken("INDIRECT together with NEXT");
      if (desc->len == 0 || desc->len % sizeof(VirtqDesc) != 0) {
        return broken("indirect table length {} is not a non-zero multiple of 16", desc->len);
      }
      if (!memory_.contains(desc->addr, desc->len)) {
        return broken("indirect table at {:#x} ({} bytes) is outside guest memory", desc->addr,
                      desc->len);
      }
      table = desc->addr;
      table_entries = desc->len / sizeof(VirtqDesc);
      in_indirect = true;
      index = 0;
      visited = 0;
      continue;
    }

    if (++chain_length > size) return broken("chain longer than the queue size {}", size);
    const bool writable = desc->flags & kVirtqDescFWrite;
    if (!writable && seen_writable) return broken("device-readable buffer after a writable one");
    seen_writable |= writable;
    if (desc->len != 0) {
      if (desc->addr > std::numeric_limits<uint64_t>::max() - desc->len) {
        return broken("buffer {:#x}+{:#x} overflows", desc->addr, desc->len);
      }
      if (!memory_.contains(desc->addr, desc->len)) {
        return broken("buffer at {:#x} ({} bytes) is outside guest memory", desc->addr, desc->len);
      }
      total += desc->len;
      if (total > std::numeric_limits<uint32_t>::max()) {
        return broken("chain is longer than 4 GiB in total");
      }
      buffers.push_back({desc->addr, desc->len, writable});
    }

    if (!(desc->flags & kVirtqDescFNext)) break;
    if (desc->next >= table_entries) {
      return broken("next index {} >= table size {}", desc->next, table_entries);
    }
    index = desc->next;
  }
  return DescriptorChain(memory_, this, generation_, head, std::move(buffers));
}

void SplitQueue::fill_used(DescriptorChain&& chain, uint32_t bytes_written) {
  if (!chain.pending_ || chain.queue_ != this) {
    spdlog::error("virtio: descriptor chain {} returned twice or to the wrong queue", chain.head_);
    return;
  }
  // A chain from before reset() belongs to a ring the driver has abandoned.
  const bool current = ready_ && chain.generation_ == generation_;
  const VirtqUsedElem elem{chain.head_, std::min(bytes_written, chain.writable_bytes_)};
  std::move(chain).discard();
  if (!current || broken_) return;

  const uint16_t slot = next_used_ & (config_.size - 1);
  memory_.write_obj(config_.used_ring + kRingEntries + sizeof(VirtqUsedElem) * slot, elem);
  ++next_used_;
}

void SplitQueue::publish_used() {
  if (!ready_ || broken_ || next_used_ == published_used_) return;
  // The driver must see the elements before the index that publishes them.
  std::atomic_thread_fence(std::memory_order_release);
  memory_.write_obj<uint16_t>(config_.used_ring + kRingIdx, next_used_);
  added_since_notify_ += static_cast<uint16_t>(next_used_ - published_used_);
  published_used_ = next_used_;
}

bool SplitQueue::needs_notification() {
  if (!ready_ || broken_ || added_since_notify_ == 0) return false;
  const uint32_t added = std::exchange(added_since_notify_, 0);
  // Our used->idx store must be visible before we read the driver's suppression state, or we
  // could miss a driver that just re-enabled interrupts (the spec's full barrier).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!config_.event_idx) {
    const auto flags = memory_.read_obj<uint16_t>(config_.avail_ring);
    return !flags || !(*flags & kVirtqAvailFNoInterrupt);
  }
  // More than 2^16 entries since the last check: the 16-bit window below can no longer tell.
  if (added > std::numeric_limits<uint16_t>::max()) return true;
  const auto used_event =
      memory_.read_obj<uint16_t>(config_.avail_ring + kRingEntries + 2ull * config_.size);
  if (!used_event) return true;
  // vring_need_event(): notify if used_event lies in [old, new) modulo 2^16.
  const uint16_t new_idx = published_used_;
  const uint16_t old_idx = static_cast<uint16_t>(new_idx - added);
  return static_cast<uint16_t>(new_idx - *used_event - 1) <
         static_cast<uint16_t>(new_idx - old_idx);
}

void SplitQueue::save_state(StateWriter& out) const {
  out.put_bool(ready_);
  out.put(config_.size);
  out.put(config_.desc_table);
  out.put(config_.avail_ring);
  out.put(config_.used_ring);
  out.put_bool(config_.event_idx);
  out.put_bool(config_.indirect_desc);
  out.put_bool(broken_);
  out.put_string(broken_reason_);
  out.put(next_avail_);
  out.put(next_used_);
  out.put(published_used_);
  out.put(added_since_notify_);
}

void SplitQueue::restore_state(StateReader& in) {
  reset();
  const bool ready = in.get_bool();
  QueueConfig config;
  config.size = in.get<uint16_t>();
  config.desc_table = in.get<uint64_t>();
  config.avail_ring = in.get<uint64_t>();
  config.used_ring = in.get<uint64_t>();
  config.event_idx = in.get_bool();
  config.indirect_desc = in.get_bool();
  const bool broken = in.get_bool();
  std::string broken_reason = in.get_string(kMaxBrokenReason);
  const auto next_avail = in.get<uint16_t>();
  const auto next_used = in.get<uint16_t>();
  const auto published_used = in.get<uint16_t>();
  const auto added_since_notify = in.get<uint32_t>();

  if (!ready) {
    // reset() leaves nothing behind, and only a ready queue moves.
    if (config != QueueConfig{} || broken || !broken_reason.empty() || next_avail != 0 ||
        next_used != 0 || published_used != 0 || added_since_notify != 0) {
      in.corrupt("a queue that is not ready has a configuration or indices");
    }
    return;
  }
  try {
    check(memory_, max_size_, config);
  } catch (const Error& error) {
    in.corrupt(error.what());
  }
  if (broken != !broken_reason.empty()) in.corrupt("a queue's broken flag and reason disagree");
  // Filled entries are published in the same handler; popped chains are at most a ring's worth
  // for every device at rest.
  if (static_cast<uint16_t>(next_used - published_used) > config.size) {
    in.corrupt(fmt::format("used entries filled ahead of used->idx ({} to {}) exceed the size {}",
                           published_used, next_used, config.size));
  }
  if (static_cast<uint16_t>(next_avail - next_used) > config.size) {
    in.corrupt(fmt::format("chains in use ({} popped, {} returned) exceed the size {}", next_avail,
                           next_used, config.size));
  }
  config_ = config;
  ready_ = true;
  broken_ = broken;
  broken_reason_ = std::move(broken_reason);
  next_avail_ = next_avail;
  next_used_ = next_used;
  published_used_ = published_used;
  added_since_notify_ = added_since_notify;
}

void SplitQueue::save_chains(StateWriter& out, std::span<const DescriptorChain> chains) {
  std::vector<uint16_t> heads;
  for (const DescriptorChain& chain : chains) heads.push_back(chain.head());
  out.put_vector(heads);
}

std::vector<DescriptorChain> SplitQueue::restore_chains(StateReader& in, size_t max_chains) {
  const auto heads = in.get_vector<uint16_t>(max_chains);
  // A broken queue writes no used entry, so its count of chains in use says nothing.
  if (broken_) return {};
  if (heads.size() != chains_in_use()) {
    in.corrupt(fmt::format("the device holds {} chain(s) of a queue with {} in use", heads.size(),
                           chains_in_use()));
  }
  std::vector<DescriptorChain> chains;
  for (const uint16_t head : heads) {
    if (head >= config_.size) in.corrupt(fmt::format("held chain head {} is out of range", head));
    auto chain = read_chain(head);
    if (!chain) break;
    chains.push_back(std::move(*chain));
  }
  return chains;
}

std::string SplitQueue::debug_state() const {
  if (!ready_) return "not ready";
  const auto avail_idx = memory_.read_obj<uint16_t>(config_.avail_ring + kRingIdx);
  std::string state =
      fmt::format("size {}, avail idx {} (popped {}), used idx {}", config_.size,
                  avail_idx ? fmt::to_string(*avail_idx) : "?", next_avail_, published_used_);
  if (broken_) state += ", broken: " + broken_reason_;
  return state;
}

}  // namespace vmm::devices::virtio
