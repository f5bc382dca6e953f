#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "devices/backends/async_io.hpp"
#include "devices/backends/raw_file.hpp"

namespace vmm::devices {

struct SnapshotOverlay;

// Sectors [first, first + count) of a disk (512 bytes each).
struct SectorRun {
  uint64_t first;
  uint64_t count;
  bool operator==(const SectorRun&) const = default;
};

// A virtual disk's image as the block device sees it: the file (opened and locked), the size the
// guest sees, and the I/O engine requests go through.
class DiskImage {
 public:
  // QEMU's -snapshot: the image is opened read-only under a shared lock and the guest's writes
  // go to a private overlay, discarded with the DiskImage.
  enum class Overlay {
    kNone,
    kTempFile,  // a sparse, unlinked temporary file in $TMPDIR (/tmp when unset)
    kMemory,    // anonymous memory (a memfd)
  };

  // Throws vmm::Error naming `path` (see RawFile::open), and for an overlay that cannot be made,
  // its place: "PATH: snapshot overlay in $TMPDIR /nope: Permission denied". A read-only disk
  // needs no overlay: it is opened read-only, whatever `overlay` says.
  static DiskImage open(const std::string& path, bool read_only, Overlay overlay);

  const std::string& path() const { return file_.path(); }
  uint64_t size() const { return file_.size(); }
  // The image itself (a snapshot's base), for reading what it holds before the guest runs.
  int image_fd() const { return file_.fd(); }
  // Whether the guest may write (an overlay takes writes though the image is opened read-only).
  bool read_only() const { return read_only_; }
  // For logs: "read-only", "snapshot overlay in /tmp", "" for a plain writable image.
  std::string describe() const;

  // An engine with room for `depth` requests in flight, serving the guest's view of the disk
  // (with an overlay: an OverlayIo, which shares the overlay with this DiskImage). The image's
  // file must outlive it.
  std::unique_ptr<AsyncIo> create_io(unsigned depth, AsyncIo::Engine engine,
                                     AsyncIo::ThreadStartHook on_thread_start) const;

  // Machine snapshots carry the overlay, else a restore over the base image would lose what the
  // guest wrote. Called with no I/O in flight (the machine paused, its disks quiesced).
  bool has_overlay() const { return overlay_ != nullptr; }
  // The sectors the guest has written into the overlay, in order; empty without an overlay.
  std::vector<SectorRun> overlay_runs() const;
  // Writes those runs' bytes to `out_fd` at their own offsets (a regular file the disk's size,
  // sparse elsewhere). Errors start with `what`.
  void save_overlay(int out_fd, const std::vector<SectorRun>& runs, const std::string& what) const;
  // Fills this disk's fresh overlay with `runs` read from `in_fd` (what save_overlay wrote) and
  // marks them written. Throws vmm::Error (starting with `what`) without an overlay, for a run
  // outside the disk, or a short file.
  void load_overlay(int in_fd, const std::vector<SectorRun>& runs, const std::string& what);

 private:
  DiskImage(RawFile file, bool read_only, std::shared_ptr<SnapshotOverlay> overlay,
            std::string overlay_place);

  RawFile file_;
  bool read_only_;
  std::shared_ptr<SnapshotOverlay> overlay_;  // null: the guest's writes go to the image
  std::string overlay_place_;                 // "/tmp", "memory"
};

}  // namespace vmm::devices
