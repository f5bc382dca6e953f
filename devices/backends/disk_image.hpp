#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "devices/backends/async_io.hpp"
#include "devices/backends/raw_file.hpp"

namespace vmm::devices {

struct SnapshotOverlay;

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

 private:
  DiskImage(RawFile file, bool read_only, std::shared_ptr<SnapshotOverlay> overlay,
            std::string overlay_place);

  RawFile file_;
  bool read_only_;
  std::shared_ptr<SnapshotOverlay> overlay_;  // null: the guest's writes go to the image
  std::string overlay_place_;                 // "/tmp", "memory"
};

}  // namespace vmm::devices
