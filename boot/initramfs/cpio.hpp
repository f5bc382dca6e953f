#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::boot {

// Builds an uncompressed newc ("070701") cpio archive, the format the kernel unpacks as its
// initramfs, in memory. Entries go out in the order they are added, so a folder must be added
// before what it holds. Names are relative ("dev/console"), as the kernel and `cpio -i` expect.
// Every entry gets an inode of its own and one link, owner root, mtime 0: the same input gives the
// same bytes. A file's data is referenced, not copied, until finish() copies it into the archive,
// which it allocates once, at its final size.
class CpioWriter {
 public:
  void add_directory(std::string_view name, uint32_t permissions);
  void add_char_device(std::string_view name, uint32_t permissions, uint32_t major, uint32_t minor);
  // `data` must stay valid until finish().
  void add_file(std::string_view name, uint32_t permissions, std::span<const uint8_t> data);

  // The archive: every entry, then the TRAILER!!!. The writer is empty afterwards.
  std::vector<uint8_t> finish();

 private:
  struct Entry {
    std::string name;
    uint32_t mode;
    std::span<const uint8_t> data;
    uint32_t rdev_major = 0;
    uint32_t rdev_minor = 0;
  };

  void add(Entry entry);

  std::vector<Entry> entries_;
};

}  // namespace vmm::boot
