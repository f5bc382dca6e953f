// The split virtqueue's chain walker (SplitQueue::pop, add_used, needs_notification) against a
// fuzzer-written descriptor table, avail ring and indirect tables; the fuzzer may scribble over
// any byte of RAM, rings included, between operations.
//
// Input: one configuration byte (bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bits 2-5 log2 of the queue
// size, 1..256), then operations (see Op).

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "devices/virtio/queue.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::DescriptorChain;
using devices::virtio::QueueConfig;
using devices::virtio::SplitQueue;
using devices::virtio::VirtqUsedElem;

constexpr uint64_t kRamSize = 64 * 1024;
constexpr uint16_t kMaxSize = 256;
constexpr uint64_t kDescTable = 0x0000;  // 256 entries: 4 KiB
constexpr uint64_t kAvailRing = 0x1000;
constexpr uint64_t kUsedRing = 0x2000;
constexpr size_t kMaxHeld = 16;
constexpr size_t kMaxCopy = 16 * 1024;

enum Op : uint8_t {
  kDesc,            // u16 index, u64 addr, u32 len, u16 flags, u16 next
  kRawWrite,        // u16 gpa, u8 n, n bytes: anywhere in RAM
  kPublish,         // u16 head
  kAdvance,         // u16 count: avail->idx moves without writing slots
  kAvailFlags,      // u16
  kUsedEvent,       // u16
  kPopAndComplete,  // u8 count, u32 bytes_written
  kPopAndHold,      // keeps the chain to complete later, out of order
  kCompleteHeld,    // u8 which, u32 bytes_written
  kDiscardHeld,     // u8 which
  kReset,           // SplitQueue::reset() and activate() again: held chains go stale
  kNeedsNotification,
  kOpCount,
};

struct Held {
  DescriptorChain chain;
  uint64_t epoch;  // activations before it was popped
};

class Harness {
 public:
  explicit Harness(Reader& in) : in_(in), ram_(kRamSize), queue_(ram_.memory(), kMaxSize) {
    const uint8_t config = in.u8();
    config_ = QueueConfig{.size = static_cast<uint16_t>(1u << ((config >> 2) % 9)),
                          .desc_table = kDescTable,
                          .avail_ring = kAvailRing,
                          .used_ring = kUsedRing,
                          .event_idx = (config & 1) != 0,
                          .indirect_desc = (config & 2) != 0};
    queue_.activate(config_);
  }

  void run() {
    while (!in_.empty()) step();
    for (Held& held : held_) std::move(held.chain).discard();
  }

 private:
  void step() {
    const uint8_t op = in_.u8() % kOpCount;
    switch (op) {
      case kDesc: {
        const uint16_t index = in_.u16() & (config_.size - 1);
        const uint64_t addr = in_.u64();
        const uint32_t len = in_.u32();
        const uint16_t flags = in_.u16();
        const uint16_t next = in_.u16();
        ram_.memory().write_obj(kDescTable + 16ull * index,
                                devices::virtio::VirtqDesc{addr, len, flags, next});
        break;
      }
      case kRawWrite: {
        const uint16_t gpa = in_.u16();
        ram_.write_clamped(gpa, in_.bytes(in_.u8()));
        break;
      }
      case kPublish: {
        const uint16_t slot = avail_idx_ & (config_.size - 1);
        ram_.memory().write_obj<uint16_t>(kAvailRing + 4 + 2ull * slot, in_.u16());
        set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
        break;
      }
      case kAdvance: set_avail_idx(static_cast<uint16_t>(avail_idx_ + in_.u16())); break;
      case kAvailFlags: ram_.memory().write_obj<uint16_t>(kAvailRing, in_.u16()); break;
      case kUsedEvent:
        ram_.memory().write_obj<uint16_t>(kAvailRing + 4 + 2ull * config_.size, in_.u16());
        break;
      case kPopAndComplete: {
        const uint8_t count = in_.u8();
        const uint32_t bytes = in_.u32();
        for (uint8_t i = 0; i < count; ++i) {
          auto chain = pop();
          if (!chain) break;
          complete(std::move(*chain), epoch_, bytes);
        }
        break;
      }
      case kPopAndHold:
        if (held_.size() < kMaxHeld) {
          if (auto chain = pop()) held_.push_back({std::move(*chain), epoch_});
        }
        break;
      case kCompleteHeld: {
        const uint8_t which = in_.u8();
        const uint32_t bytes = in_.u32();
        if (held_.empty()) break;
        Held held = take(which);
        complete(std::move(held.chain), held.epoch, bytes);
        break;
      }
      case kDiscardHeld:
        if (!held_.empty()) std::move(take(in_.u8()).chain).discard();
        break;
      case kReset:
        queue_.reset();
        VMM_FUZZ_CHECK(!queue_.ready() && !queue_.broken(), "reset left the queue in use");
        queue_.activate(config_);
        ++epoch_;
        expected_used_ = 0;
        break;
      case kNeedsNotification: queue_.needs_notification(); break;
    }
  }

  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    ram_.memory().write_obj<uint16_t>(kAvailRing + 2, idx);
  }

  Held take(uint8_t which) {
    const size_t index = which % held_.size();
    Held held = std::move(held_[index]);
    held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(index));
    return held;
  }

  // Pops a chain and checks what the queue promises about it.
  std::optional<DescriptorChain> pop() {
    auto chain = queue_.pop();
    if (!chain) return std::nullopt;
    VMM_FUZZ_CHECK(!queue_.broken(), "pop() returned a chain from a broken queue");
    VMM_FUZZ_CHECK(chain->head() < config_.size, "head %u", chain->head());
    uint64_t readable = 0;
    uint64_t writable = 0;
    for (const auto& buffer : *chain) {
      VMM_FUZZ_CHECK(buffer.len != 0 && ram_.memory().contains(buffer.addr, buffer.len),
                     "buffer %#llx+%u outside RAM", static_cast<unsigned long long>(buffer.addr),
                     buffer.len);
      VMM_FUZZ_CHECK(buffer.writable || writable == 0, "readable buffer after a writable one");
      (buffer.writable ? writable : readable) += buffer.len;
    }
    VMM_FUZZ_CHECK(readable == chain->readable_bytes() && writable == chain->writable_bytes(),
                   "byte counts %u/%u, buffers say %llu/%llu", chain->readable_bytes(),
                   chain->writable_bytes(), static_cast<unsigned long long>(readable),
                   static_cast<unsigned long long>(writable));

    // Copies across buffer boundaries, from a fuzzer-chosen offset.
    const uint32_t offset = in_.u32();
    std::vector<uint8_t> copy(std::min<uint64_t>(kMaxCopy, std::max(readable, writable)));
    const size_t read = chain->read(offset, copy);
    VMM_FUZZ_CHECK(
        read == (offset < readable ? std::min<uint64_t>(copy.size(), readable - offset) : 0),
        "read %zu bytes at offset %u of %llu", read, offset,
        static_cast<unsigned long long>(readable));
    const size_t written = chain->write(offset, copy);
    VMM_FUZZ_CHECK(
        written == (offset < writable ? std::min<uint64_t>(copy.size(), writable - offset) : 0),
        "wrote %zu bytes at offset %u of %llu", written, offset,
        static_cast<unsigned long long>(writable));
    return chain;
  }

  // Returns a chain and checks that the used ring got it exactly when it should have.
  void complete(DescriptorChain&& chain, uint64_t epoch, uint32_t bytes) {
    const uint16_t head = chain.head();
    const uint32_t writable = chain.writable_bytes();
    const bool expect_used = epoch == epoch_ && !queue_.broken();
    const auto used_before = ram_.memory().read_obj<uint16_t>(kUsedRing + 2);
    queue_.add_used(std::move(chain), bytes);
    const auto used_after = ram_.memory().read_obj<uint16_t>(kUsedRing + 2);
    if (!expect_used) {
      VMM_FUZZ_CHECK(used_after == used_before, "a stale chain reached the used ring");
      return;
    }
    ++expected_used_;
    VMM_FUZZ_CHECK(used_after == expected_used_, "used->idx %u, expected %u", *used_after,
                   expected_used_);
    const uint16_t slot = static_cast<uint16_t>(expected_used_ - 1) & (config_.size - 1);
    const auto elem = ram_.memory().read_obj<VirtqUsedElem>(kUsedRing + 4 + 8ull * slot);
    VMM_FUZZ_CHECK(elem->id == head && elem->len == std::min(bytes, writable),
                   "used entry {%u, %u} for head %u, %u of %u bytes", elem->id, elem->len, head,
                   bytes, writable);
  }

  Reader& in_;
  FuzzRam ram_;
  SplitQueue queue_;
  QueueConfig config_;
  uint16_t avail_idx_ = 0;
  uint16_t expected_used_ = 0;
  uint64_t epoch_ = 0;
  std::vector<Held> held_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
