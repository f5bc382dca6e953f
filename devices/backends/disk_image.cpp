#include "devices/backends/disk_image.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/util/error.hpp"
#include "devices/backends/overlay_io.hpp"

namespace vmm::devices {

namespace {

// An empty file of `size` bytes that takes no space until written, gone when its fd closes: a
// memfd, or unlinked in `dir` (O_TMPFILE: it never has a name). Errors start with `what`.
UniqueFd create_overlay_file(DiskImage::Overlay overlay, const std::string& dir,
                             const std::string& what, uint64_t size) {
  UniqueFd fd(overlay == DiskImage::Overlay::kMemory
                  ? ::memfd_create("vmm-snapshot-overlay", MFD_CLOEXEC)
                  : ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600));
  if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) throw_errno(what);
  return fd;
}

}  // namespace

DiskImage::DiskImage(RawFile file, bool read_only, std::shared_ptr<SnapshotOverlay> overlay,
                     std::string overlay_place)
    : file_(std::move(file)),
      read_only_(read_only),
      overlay_(std::move(overlay)),
      overlay_place_(std::move(overlay_place)) {}

DiskImage DiskImage::open(const std::string& path, bool read_only, Overlay overlay) {
  if (overlay == Overlay::kNone || read_only) {
    return DiskImage(RawFile::open(path, read_only), read_only, nullptr, "");
  }
  // The base is only read: a read lock, shared with every other snapshot (or read-only) user.
  RawFile file = RawFile::open(path, true);
  std::string place = "memory";
  std::string what = "snapshot overlay in memory";
  if (overlay == Overlay::kTempFile) {
    const char* tmpdir = std::getenv("TMPDIR");
    const bool from_env = tmpdir != nullptr && *tmpdir != '\0';
    place = from_env ? tmpdir : "/tmp";
    what = "snapshot overlay in " + (from_env ? "$TMPDIR " + place : place);
  }
  try {
    auto snapshot = std::make_shared<SnapshotOverlay>(
        create_overlay_file(overlay, place, what, file.size()), file.size());
    return DiskImage(std::move(file), false, std::move(snapshot), place);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
}

std::string DiskImage::describe() const {
  if (overlay_) return "snapshot overlay in " + overlay_place_;
  return read_only_ ? "read-only" : "";
}

std::unique_ptr<AsyncIo> DiskImage::create_io(unsigned depth, AsyncIo::Engine engine,
                                              AsyncIo::ThreadStartHook on_thread_start) const {
  if (overlay_) {
    return std::make_unique<OverlayIo>(file_.fd(), overlay_, depth, engine,
                                       std::move(on_thread_start));
  }
  return AsyncIo::create(file_.fd(), depth, engine, std::move(on_thread_start));
}

}  // namespace vmm::devices
