#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::boot {

// Describes an uncompressed newc ("070701") cpio archive, the format the kernel unpacks as its
// initramfs, and writes it wherever the caller wants it (guest memory, a vector). Entries go out
// in the order they are added, so a folder must be added before what it holds. Names are relative
// ("dev/console"), as the kernel and `cpio -i` expect. Every entry gets an inode of its own and one
// link, owner root, mtime 0: the same input gives the same bytes. A file's data is referenced,
// never copied, until write_to copies it to its place in the archive.
class CpioWriter {
 public:
  // Writes exactly out.size() bytes of a file's data into `out`, e.g. straight from a read(2).
  using Filler = std::function<void(std::span<uint8_t> out)>;

  void add_directory(std::string_view name, uint32_t permissions);
  void add_char_device(std::string_view name, uint32_t permissions, uint32_t major, uint32_t minor);
  // `data` must stay valid while the archive may be written.
  void add_file(std::string_view name, uint32_t permissions, std::span<const uint8_t> data);
  // A file of `size` bytes that `fill` writes when the archive is written.
  void add_file(std::string_view name, uint32_t permissions, size_t size, Filler fill);

  // The archive's size: every entry, then the TRAILER!!!.
  size_t size() const;
  // Writes the archive into `out`, which must be size() bytes.
  void write_to(std::span<uint8_t> out) const;
  // The archive in a vector of its own.
  std::vector<uint8_t> archive() const;

 private:
  struct Entry {
    std::string name;
    uint32_t mode = 0;
    size_t size = 0;
    std::span<const uint8_t> data{};
    Filler fill{};  // when set, it writes the data instead of `data`
    uint32_t rdev_major = 0;
    uint32_t rdev_minor = 0;
  };

  void add(Entry entry);

  std::vector<Entry> entries_;
};

}  // namespace vmm::boot
