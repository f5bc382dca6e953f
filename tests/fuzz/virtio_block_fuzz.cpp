// The virtio-blk request path: the fuzzer plays the guest driver (descriptors, request headers
// and data in RAM, the avail ring, notifications, device resets) against a VirtioBlock serving an
// in-memory image through a synchronous AsyncIo; completions run on a real EventLoop. After every
// step the used ring must hold only entries the driver made available, and once everything has
// drained every request made available must have been completed.
//
// Input: one configuration byte (bit 0 EVENT_IDX, 1 INDIRECT_DESC, 2 read-only disk, 3 FLUSH,
// 4 DISCARD, 5 WRITE_ZEROES negotiated), a u16 (bytes added to a 64 KiB image, for partial
// sectors), then operations (see Op).

#include <cerrno>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>

#include "base/event/event_loop.hpp"
#include "devices/virtio/block.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::VirtioBlock;
namespace virtio = devices::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDataArea = 0x4000;  // to the end of RAM, above the queue (stacked_queues)
constexpr uint64_t kDiskBase = 64 * 1024;

enum Op : uint8_t {
  kDesc,        // u8 index, u32 address choice, u32 len, u16 flags, u16 next
  kData,        // u32 offset into the data area, u8 n, n bytes
  kPublish,     // u16 head
  kAdvance,     // u8 count: avail->idx moves over stale slots
  kNotify,      // u16 queue index
  kRunLoop,     // one round of the event loop: completions
  kReset,       // the driver resets the device and sets it up again
  kIoResult,    // u8: the next I/O returns an error or a short count
  kAvailFlags,  // u16
  kUsedEvent,   // u16
  kOpCount,
};

class Harness {
 public:
  explicit Harness(Reader& in)
      : in_(in), ram_(kRamSize), guest_(ram_.memory(), stacked_queues(1, VirtioBlock::kQueueSize)) {
    const uint8_t options = in.u8();
    const uint64_t disk_size = kDiskBase + (in.u16() & 0x3ff);
    disk_ = memfd_with_pattern("vmm-fuzz-disk", disk_size);
    auto io = std::make_unique<SyncIo>(disk_.get(), VirtioBlock::kQueueSize);
    io_ = io.get();
    device_.emplace(
        ram_.memory(), loop_, disk_size, std::move(io),
        devices::virtio::BlockOptions{.read_only = (options & 4) != 0, .serial = "fuzz-serial"},
        "vdz");
    uint64_t features = virtio::kFeatureVersion1;
    if (options & 1) features |= virtio::kFeatureRingEventIdx;
    if (options & 2) features |= virtio::kFeatureRingIndirectDesc;
    if (options & 8) features |= virtio::kBlkFeatureFlush;
    if (options & 16) features |= virtio::kBlkFeatureDiscard;
    if (options & 32) features |= virtio::kBlkFeatureWriteZeroes;
    guest_.activate(*device_, features & device_->features());
  }

  void run() {
    while (!in_.empty()) {
      step();
      guest_.check_used();
    }
    // The driver waits for every request it made available: once the device has run out of
    // work, each must be back in the used ring (unless the queue broke).
    device_->notify(0);
    run_until_idle(loop_);
    guest_.check_used();
    guest_.check_all_returned(0, "requests");
    device_.reset();
  }

 private:
  void step() {
    QueueDriver& driver = guest_.driver(0);
    switch (in_.u8() % kOpCount) {
      case kDesc: write_desc(in_, driver, kDataArea, kRamSize); break;
      case kData: write_data(in_, ram_, kDataArea); break;
      case kPublish: driver.publish(in_.u16()); break;
      case kAdvance: driver.advance(in_.u8()); break;
      case kNotify: device_->notify(in_.u16()); break;
      case kRunLoop: loop_.run_once(0); break;
      case kReset: guest_.reset(*device_, loop_); break;
      case kIoResult: {
        static constexpr int64_t kResults[] = {-EIO, -EOPNOTSUPP, -ENOSPC, 0, 1, 511, 4096};
        io_->next_result = kResults[in_.u8() % std::size(kResults)];
        break;
      }
      case kAvailFlags: driver.set_avail_flags(in_.u16()); break;
      case kUsedEvent: driver.set_used_event(in_.u16()); break;
    }
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  GuestDriver guest_;
  UniqueFd disk_;
  SyncIo* io_ = nullptr;
  std::optional<VirtioBlock> device_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
