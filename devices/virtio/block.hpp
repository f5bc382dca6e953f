#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/token_bucket.hpp"
#include "devices/backends/async_io.hpp"
#include "devices/virtio/block_request.hpp"
#include "devices/virtio/throttle.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::virtio {

// virtio-blk feature bits (virtio 1.2, 5.2.3).
inline constexpr uint64_t kBlkFeatureSizeMax = uint64_t{1} << 1;
inline constexpr uint64_t kBlkFeatureSegMax = uint64_t{1} << 2;
inline constexpr uint64_t kBlkFeatureRo = uint64_t{1} << 5;
inline constexpr uint64_t kBlkFeatureBlkSize = uint64_t{1} << 6;
inline constexpr uint64_t kBlkFeatureFlush = uint64_t{1} << 9;
inline constexpr uint64_t kBlkFeatureDiscard = uint64_t{1} << 13;
inline constexpr uint64_t kBlkFeatureWriteZeroes = uint64_t{1} << 14;

struct BlockOptions {
  bool read_only = false;
  std::string serial{};    // VIRTIO_BLK_ID_BYTES (20) max; the CLI refuses longer ones
  RateLimit rate_limit{};  // bytes read or written, and requests of any kind
};

// struct virtio_blk_config (virtio 1.2, 5.2.4) up to the write-zeroes fields, little-endian.
// The fields we do not offer (geometry, topology, writeback, num_queues, secure erase) read 0.
#pragma pack(push, 1)
struct VirtioBlkConfig {
  uint64_t capacity;  // 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t geometry_cylinders;
  uint8_t geometry_heads;
  uint8_t geometry_sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
};
#pragma pack(pop)
static_assert(sizeof(VirtioBlkConfig) == 60);

// A virtio-blk device (virtio 1.2, 5.2) serving a raw image through an AsyncIo engine: data moves
// straight between the image and guest memory, several requests in flight on one queue.
//
// The disk exposes disk_size / 512 sectors: a trailing partial sector of an image whose size is
// not a multiple of 512 is not visible to the guest (and never written).
//
// Writes are write-back (VIRTIO_BLK_F_FLUSH, writeback not configurable): a FLUSH request is an
// fdatasync, and its status is written only when that has completed. A driver that does not
// negotiate FLUSH gets write-through: each modifying request is followed by an fdatasync.
//
// Threading: owned by the event loop thread (VirtioDevice). From activation to reset it watches
// the queue's notify fd, the engine's completions and a resume eventfd of its own. A notification
// starts at most one queue's worth of chains and, if more wait, signals the resume eventfd, so
// the loop serves everything else in between. reset() asks the engine to cancel what is in flight
// and reports done once the last request has completed, without blocking the loop.
//
// Rate limit (BlockOptions::rate_limit, set_rate_limit()): a chain over the budget is held as the
// next to start, nothing more is popped, and the limit's timer resumes the queue; nothing is
// refused.
//
// Snapshot: quiesce() waits on the calling thread, up to its deadline, for the requests in flight
// and completes them; the saved state then holds no request, only the queue (restored by the
// transport) and the chain held for the rate limit, if any (the limit's buckets start full again).
class VirtioBlock final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = kBlkQueueSize;

  // `disk_size` bytes (RawFile::size()); `io` serves requests on the image's fd and must allow
  // kQueueSize requests in flight; the device works on `loop`. `name` is for logs ("vda").
  VirtioBlock(const GuestMemory& memory, EventLoop& loop, uint64_t disk_size,
              std::unique_ptr<AsyncIo> io, BlockOptions options, std::string name);
  VirtioBlock(const VirtioBlock&) = delete;
  VirtioBlock& operator=(const VirtioBlock&) = delete;
  // Waits for the requests in flight, then leaves the event loop (a pending reset's done is not
  // called: its transport is going away too).
  ~VirtioBlock() override;

  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(const Activation& activation) override;
  void notify(uint16_t index) override;
  void reset(ResetDone done) override;
  void quiesce(std::chrono::steady_clock::time_point deadline) override;
  void save_state(StateWriter& out) const override;
  void restore_state(StateReader& in) override;

  std::string debug_state() const override;
  uint64_t capacity_sectors() const { return config_.capacity; }
  // A live change of the rate limit, on the owner thread.
  void set_rate_limit(const RateLimit& limit) { throttle_.set(limit); }

 private:
  // What a request in flight is waiting for.
  enum class Stage {
    kTransfer,    // read/write: `expected` bytes
    kFlush,       // fdatasync (FLUSH, or write-through after a modifying request)
    kDiscard,     // punch hole; unsupported is fine, discard is a hint
    kPunchZeros,  // write zeroes with UNMAP; unsupported: try kZeroRange
    kZeroRange,   // unsupported: write zeros
    kWriteZeros,  // the fallback pwritev of a zeroed buffer
  };
  struct InFlight {
    DescriptorChain chain;
    Stage stage;
    uint64_t offset;
    uint64_t length;
    uint64_t expected;       // kTransfer and kWriteZeros: bytes the call must transfer
    uint32_t status_offset;  // in the writable part
    uint32_t data_written;   // bytes of data written into the writable part (reads)
    uint64_t payload;        // bytes the guest reads or writes, for the metrics
    bool modifies;           // needs an fdatasync when writing through
  };

  void on_completions();
  // Reaps the engine's completions: completes the requests that are done and submits the next
  // stage of the others.
  void reap_completions();
  // Starts the chains the driver made available, as many as there is room for in flight and at
  // most one queue's worth; signals resume_ if it stopped with chains left for the budget's sake.
  void start_available();
  // Submits a popped chain's first stage, or completes it at once.
  void start(DescriptorChain chain, BlockRequest request);
  // `request`'s current stage returned `result`: its final status, or nullopt after queueing the
  // next stage in pending_.
  std::optional<uint8_t> advance(InFlight& request, int64_t result);
  // Writes the status, returns the chain and counts it in the metrics (`payload` bytes moved).
  void complete(DescriptorChain&& chain, uint32_t status_offset, uint32_t data_written,
                uint8_t status, uint64_t payload);
  // Logs a refused or failed request (the first of each kind at its policy's level, the rest at
  // debug) and returns what the policy answers.
  BlockErrorPolicy report(BlockError error, uint16_t head, const std::string& detail);
  void notify_driver();
  void check_broken();
  // Watches the fds the device needs while active (until the reset is done).
  void watch(const std::vector<int>& notify_fds);
  // Reset: once nothing is in flight, the device is idle and `reset_done_` is called.
  void finish_reset_if_idle();

  const GuestMemory& memory_;
  EventLoop& loop_;
  const std::unique_ptr<AsyncIo> io_;
  const BlockOptions options_;
  const std::string name_;
  VirtioBlkConfig config_{};

  EventFd resume_;               // more chains wait than one wake-up starts
  WatchedFds watched_{loop_};    // notify fds, completions, resume_: while active or resetting
  ResetDone reset_done_;         // set while a reset waits for requests in flight
  SplitQueue* queue_ = nullptr;  // while active
  DeviceInterrupt* interrupt_ = nullptr;
  BlockLimits limits_;
  bool write_through_ = false;
  bool queue_failed_ = false;  // broken queue seen: no more pops
  std::bitset<32> reported_;   // the BlockError kinds logged at their level already
  uint64_t next_cookie_ = 0;
  std::unordered_map<uint64_t, InFlight> in_flight_;
  std::vector<IoRequest> pending_;  // follow-up stages queued while reaping
  Throttle throttle_{options_.rate_limit, metrics_};
  std::optional<DescriptorChain> throttled_;  // popped, waiting for the rate limit: next to start
};

}  // namespace vmm::devices::virtio
