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

#include "devices/virtio/block.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "vmm/event/event_loop.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::Activation;
using devices::virtio::QueueConfig;
using devices::virtio::SplitQueue;
using devices::virtio::VirtioBlock;
namespace virtio = devices::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDescTable = 0x0000;  // 256 entries: 4 KiB
constexpr uint64_t kAvailRing = 0x1000;
constexpr uint64_t kUsedRing = 0x2000;
constexpr uint64_t kDataArea = 0x4000;  // to the end of RAM
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
      : in_(in),
        ram_(kRamSize),
        queue_(ram_.memory(), VirtioBlock::kQueueSize),
        config_{.size = VirtioBlock::kQueueSize,
                .desc_table = kDescTable,
                .avail_ring = kAvailRing,
                .used_ring = kUsedRing},
        driver_(ram_.memory(), config_) {
    const uint8_t options = in.u8();
    const uint64_t disk_size = kDiskBase + (in.u16() & 0x3ff);
    config_.event_idx = (options & 1) != 0;
    config_.indirect_desc = (options & 2) != 0;
    driver_ = QueueDriver(ram_.memory(), config_);
    disk_ = memfd_with_pattern("vmm-fuzz-disk", disk_size);
    auto io = std::make_unique<SyncIo>(disk_.get(), VirtioBlock::kQueueSize);
    io_ = io.get();
    device_.emplace(
        ram_.memory(), loop_, disk_size, std::move(io),
        devices::virtio::BlockOptions{.read_only = (options & 4) != 0, .serial = "fuzz-serial"},
        "vdz");
    features_ = virtio::kFeatureVersion1;
    if (config_.event_idx) features_ |= virtio::kFeatureRingEventIdx;
    if (config_.indirect_desc) features_ |= virtio::kFeatureRingIndirectDesc;
    if (options & 8) features_ |= virtio::kBlkFeatureFlush;
    if (options & 16) features_ |= virtio::kBlkFeatureDiscard;
    if (options & 32) features_ |= virtio::kBlkFeatureWriteZeroes;
    features_ &= device_->features();
    activate();
  }

  void run() {
    while (!in_.empty()) {
      step();
      driver_.check_used();
    }
    // The driver waits for every request it made available: once the device has run out of
    // work, each must be back in the used ring (unless the queue broke).
    device_->notify(0);
    drain();
    driver_.check_used();
    if (!queue_.broken()) {
      VMM_FUZZ_CHECK(driver_.used_total() == driver_.published_total(),
                     "%llu requests made available, %llu completed",
                     static_cast<unsigned long long>(driver_.published_total()),
                     static_cast<unsigned long long>(driver_.used_total()));
    }
    device_.reset();
  }

 private:
  void activate() {
    queue_.activate(config_);
    device_->activate(Activation{features_, {&queue_}, &interrupt_});
  }

  void drain() {
    for (int round = 0; round < 64; ++round) {
      const uint64_t before = loop_.dispatched();
      loop_.run_once(0);
      if (loop_.dispatched() == before) return;
    }
  }

  void step() {
    switch (in_.u8() % kOpCount) {
      case kDesc: {
        const uint8_t index = in_.u8();
        const uint64_t addr = pick_address(in_, kDataArea, kRamSize);
        const uint32_t len = in_.u32();
        const uint16_t flags = in_.u16();
        driver_.desc(index, addr, len, flags, in_.u16());
        break;
      }
      case kData: {
        const uint64_t offset = in_.u32() % (kRamSize - kDataArea);
        ram_.write_clamped(kDataArea + offset, in_.bytes(in_.u8()));
        break;
      }
      case kPublish: driver_.publish(in_.u16()); break;
      case kAdvance: driver_.advance(in_.u8()); break;
      case kNotify: device_->notify(in_.u16()); break;
      case kRunLoop: loop_.run_once(0); break;
      case kReset:
        device_->reset();
        queue_.reset();
        driver_.restart();
        activate();
        break;
      case kIoResult: {
        static constexpr int64_t kResults[] = {-EIO, -EOPNOTSUPP, -ENOSPC, 0, 1, 511, 4096};
        io_->next_result = kResults[in_.u8() % std::size(kResults)];
        break;
      }
      case kAvailFlags: driver_.set_avail_flags(in_.u16()); break;
      case kUsedEvent: driver_.set_used_event(in_.u16()); break;
    }
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  SplitQueue queue_;
  QueueConfig config_;
  QueueDriver driver_;
  FakeDeviceInterrupt interrupt_;
  UniqueFd disk_;
  SyncIo* io_ = nullptr;
  uint64_t features_ = 0;
  std::optional<VirtioBlock> device_;
};

}  // namespace
}  // namespace vmm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vmm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmm::fuzz::Reader in(data, size);
  vmm::fuzz::Harness(in).run();
  return 0;
}
