#include "devices/backends/disk_image.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <vector>

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

// Copies [offset, offset + length) from one file to the same place in another.
void copy_range(int from, int to, uint64_t offset, uint64_t length, const std::string& what) {
  std::vector<uint8_t> buffer(std::min<uint64_t>(length, uint64_t{1} << 20));
  while (length > 0) {
    const size_t chunk = std::min<uint64_t>(length, buffer.size());
    const ssize_t got = ::pread(from, buffer.data(), chunk, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) throw_errno(what);
    if (got == 0) fail("{}: ends before byte {}", what, offset);
    size_t written = 0;
    while (written < static_cast<size_t>(got)) {
      const ssize_t put = ::pwrite(to, buffer.data() + written, static_cast<size_t>(got) - written,
                                   static_cast<off_t>(offset + written));
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) throw_errno(what);
      written += static_cast<size_t>(put);
    }
    offset += static_cast<uint64_t>(got);
    length -= static_cast<uint64_t>(got);
  }
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

std::vector<SectorRun> DiskImage::overlay_runs() const {
  std::vector<SectorRun> runs;
  if (!overlay_) return runs;
  const SectorBitmap& written = overlay_->written;
  for (uint64_t sector = 0; sector < written.sectors();) {
    const uint64_t end = written.run_end(sector, written.sectors());
    if (written.test(sector)) runs.push_back({sector, end - sector});
    sector = end;
  }
  return runs;
}

void DiskImage::save_overlay(int out_fd, const std::vector<SectorRun>& runs,
                             const std::string& what) const {
  if (!overlay_) fail("{}: {} has no snapshot overlay", what, path());
  if (::ftruncate(out_fd, static_cast<off_t>(size())) != 0) throw_errno(what);
  for (const SectorRun& run : runs) {
    copy_range(overlay_->fd.get(), out_fd, run.first * SectorBitmap::kSectorSize,
               run.count * SectorBitmap::kSectorSize, what);
  }
}

void DiskImage::load_overlay(int in_fd, const std::vector<SectorRun>& runs,
                             const std::string& what) {
  if (!overlay_) fail("{}: {} has no snapshot overlay to fill", what, path());
  const uint64_t sectors = overlay_->written.sectors();
  for (const SectorRun& run : runs) {
    if (run.count == 0 || run.first >= sectors || run.count > sectors - run.first) {
      fail("{}: sectors {}+{} lie outside the {}-sector disk", what, run.first, run.count, sectors);
    }
  }
  for (const SectorRun& run : runs) {
    copy_range(in_fd, overlay_->fd.get(), run.first * SectorBitmap::kSectorSize,
               run.count * SectorBitmap::kSectorSize, what);
    overlay_->written.set(run.first, run.count);
  }
}

}  // namespace vmm::devices
