#pragma once

#include <cstdint>
#include <string>

#include "base/util/unique_fd.hpp"

namespace vmm::devices {

// A raw disk image file, opened for a virtual disk and locked against other writers.
//
// Locking uses open file description locks (F_OFD_SETLK) over the whole file: a writable image
// takes a write lock, a read-only one a read lock, so two VMs (or a VM and a tool that locks, such
// as QEMU) can share an image read-only but never while one of them writes.
class RawFile {
 public:
  // Throws vmm::Error naming `path`: "PATH: No such file or directory", "PATH: is a directory",
  // "PATH: in use by another process (locked)", "PATH: Read-only file system" (when opening for
  // writing is refused), ...
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
