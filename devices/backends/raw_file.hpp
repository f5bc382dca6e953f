#pragma once

#include <cstdint>
#include <string>

#include "base/util/unique_fd.hpp"

namespace vmm::devices {

// A raw disk image file, opened for a virtual disk and locked against other writers.
//
// Locking is QEMU's (open file description locks on the bytes that stand for its permissions),
// so vmm and QEMU see each other's: an image is shared by readers, or written by one writer alone.
// Both a writable and a read-only disk forbid others writing and resizing it (QEMU's
// share-rw=off); only a reader that lets others write (QEMU's share-rw=on) may join a writer.
class RawFile {
 public:
  // Throws vmm::Error naming `path`: "PATH: No such file or directory", "PATH: is a directory",
  // "PATH: in use: locked by another vmm, QEMU, or another --disk of this VM, which writes it",
  // "PATH: Read-only file system" (when opening for writing is refused), ...
  static RawFile open(const std::string& path, bool read_only);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  // Size in bytes when opened (a block device's size for a block device node).
  uint64_t size() const { return size_; }
  bool read_only() const { return read_only_; }

 private:
  RawFile(UniqueFd fd, std::string path, uint64_t size, bool read_only)
      : fd_(std::move(fd)), path_(std::move(path)), size_(size), read_only_(read_only) {}

  UniqueFd fd_;
  std::string path_;
  uint64_t size_;
  bool read_only_;
};

}  // namespace vmm::devices
