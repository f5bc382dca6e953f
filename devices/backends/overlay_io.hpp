#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"
#include "devices/backends/async_io.hpp"

namespace vmm::devices {

// One bit per 512-byte sector of a disk. The bits live in memory reserved for the whole disk
// (1 TiB: 256 MiB) and committed page by page as bits are set, so what it costs is bounded by
// the disk, and in practice by how much of it the guest has written.
class SectorBitmap {
 public:
  static constexpr uint64_t kSectorSize = 512;

  // Throws vmm::Error when the memory cannot be reserved.
  explicit SectorBitmap(uint64_t sectors);
  ~SectorBitmap();
  SectorBitmap(const SectorBitmap&) = delete;
  SectorBitmap& operator=(const SectorBitmap&) = delete;

  uint64_t sectors() const { return sectors_; }
  bool test(uint64_t sector) const;
  // Sets [first, first+count), which must lie within sectors().
  void set(uint64_t first, uint64_t count);
  // The end of the run of sectors from `first` that are all set or all clear, as `first` is:
  // the first sector in [first, limit) that differs, or `limit`. first < limit <= sectors().
  uint64_t run_end(uint64_t first, uint64_t limit) const;

 private:
  uint64_t sectors_;
  uint64_t* words_ = nullptr;
  uint64_t mapped_bytes_ = 0;
};

// A snapshot's overlay: a sparse file (or memfd) as large as the disk that takes the guest's
// writes, and which of its sectors they have covered. Everything else reads from the base image.
struct SnapshotOverlay {
  SnapshotOverlay(UniqueFd overlay_fd, uint64_t disk_size)
      : fd(std::move(overlay_fd)), written(disk_size / SectorBitmap::kSectorSize) {}

  UniqueFd fd;
  SectorBitmap written;
};

// AsyncIo over a base image and its snapshot overlay, on an engine of the usual kinds (io_uring or
// the thread pool, working on both files). Each request is served in parts:
// - a read is split into runs of sectors, each read from the overlay (written) or the base;
// - a write, a punched hole or a zeroed range goes to the overlay, and marks its sectors once it
//   has succeeded (so a read meanwhile sees the old data or the new, never the overlay's holes);
// - a flush completes without I/O: the overlay is thrown away at exit, so nothing is to be made
//   durable (QEMU's temporary snapshot overlays skip flushes too).
// Modifying requests must cover whole sectors within the disk, else they fail with -EINVAL (the
// virtio-blk device never sends others). Parts wait for room in the engine; a request completes,
// once, when its last part has: with the first error of its parts, or, for a read or a write,
// the bytes up to its first short part.
//
// Like every AsyncIo: one thread makes every call. The base fd must outlive the engine; the
// overlay is shared with the DiskImage that made it.
class OverlayIo final : public AsyncIo {
 public:
  // Throws vmm::Error as AsyncIo::create does.
  OverlayIo(int base_fd, std::shared_ptr<SnapshotOverlay> overlay, unsigned depth, Engine engine,
            ThreadStartHook on_thread_start);
  ~OverlayIo() override;
  OverlayIo(const OverlayIo&) = delete;
  OverlayIo& operator=(const OverlayIo&) = delete;

  std::string name() const override { return inner_->name() + " with a snapshot overlay"; }
  void submit(IoRequest request) override;
  void flush_submissions() override;
  int completion_fd() const override { return inner_->completion_fd(); }
  size_t reap(const std::function<void(const IoCompletion&)>& on_complete) override;
  size_t in_flight() const override { return depth_ - free_requests_.size(); }
  void cancel_all() override;
  void wait_all(const std::function<void(const IoCompletion&)>& on_complete) override;

 private:
  // A request of the caller's, from submit() until it completes.
  struct Request {
    IoRequest io;
    uint64_t length = 0;      // bytes: the buffers' total (read, write) or io.length
    uint64_t issued = 0;      // bytes handed to the engine so far (a read's parts, in order)
    size_t buffer_index = 0;  // where in io.buffers the next part starts
    uint64_t buffer_offset = 0;
    unsigned parts_in_flight = 0;
    int64_t error = 0;         // the first failed part's -errno (or -EINVAL, -ECANCELED)
    uint64_t transferred = 0;  // bytes up to the first short part
    bool waiting = false;      // in waiting_: completes only through a part issued from there
  };
  // A part in the engine: its cookie is its index in parts_.
  struct Part {
    uint32_t request = 0;  // index in requests_
    uint64_t start = 0;    // bytes into the request
    uint64_t length = 0;
  };

  // Whether `request` has a part left to hand to the engine.
  static bool has_parts_left(const Request& request);
  // Hands the engine the next part of `index`'s request.
  void issue_part(uint32_t index);
  // Hands the engine parts of the waiting requests, in turn, while it has room.
  void issue_waiting();
  // The engine finished a part: updates its request and completes that when it was the last.
  void part_done(const IoCompletion& completion,
                 const std::function<void(const IoCompletion&)>& on_complete);
  // The next `length` bytes of `request`'s buffers, advancing its position in them.
  static std::vector<iovec> take_buffers(Request& request, uint64_t length);

  const int base_fd_;
  const std::shared_ptr<SnapshotOverlay> overlay_;
  const unsigned depth_;
  const uint64_t disk_bytes_;  // the whole sectors the overlay tracks
  std::unique_ptr<AsyncIo> inner_;
  std::vector<Request> requests_;
  std::vector<uint32_t> free_requests_;
  std::vector<Part> parts_;
  std::vector<uint32_t> free_parts_;
  std::deque<uint32_t> waiting_;  // requests with parts not yet in the engine, served in turn
};

}  // namespace vmm::devices
