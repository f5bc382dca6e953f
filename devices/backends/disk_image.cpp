#include "devices/backends/disk_image.hpp"

#include "base/util/error.hpp"

namespace vmm::devices {

DiskImage DiskImage::open(const std::string& path, bool read_only, Overlay overlay) {
  if (overlay != Overlay::kNone) fail("{}: snapshot overlays are not implemented yet", path);
  return DiskImage(RawFile::open(path, read_only), read_only);
}

std::string DiskImage::describe() const {
  return read_only_ ? "read-only" : "";
}

std::unique_ptr<AsyncIo> DiskImage::create_io(unsigned depth, AsyncIo::Engine engine,
                                              AsyncIo::ThreadStartHook on_thread_start) const {
  return AsyncIo::create(file_.fd(), depth, engine, std::move(on_thread_start));
}

}  // namespace vmm::devices
