#include "boot/initramfs/cpio.hpp"

#include <sys/stat.h>

#include <cstring>
#include <limits>
#include <utility>

#include "base/util/error.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {

namespace {

constexpr std::string_view kMagic = "070701";
// The magic and thirteen 8-digit hex fields.
constexpr size_t kHeaderSize = 6 + 13 * 8;
constexpr std::string_view kTrailerName = "TRAILER!!!";
// newc pads the header plus name, and the data, to 4 bytes.
constexpr size_t kAlignment = 4;

size_t name_end(std::string_view name) {
  return align_up(kHeaderSize + name.size() + 1, kAlignment);
}

size_t entry_size(std::string_view name, size_t data_size) {
  return name_end(name) + align_up(data_size, kAlignment);
}

// newc's numbers: eight upper-case hex digits, no terminator.
void put_hex8(uint8_t* out, uint32_t value) {
  constexpr char kDigits[] = "0123456789ABCDEF";
  for (int i = 7; i >= 0; --i, value >>= 4) out[i] = kDigits[value & 0xf];
}

// Writes one entry's header and name at `out`; returns where its data goes.
uint8_t* put_header(uint8_t* out, uint32_t inode, std::string_view name, uint32_t mode,
                    size_t data_size, uint32_t rdev_major, uint32_t rdev_minor) {
  const uint32_t fields[13] = {
      inode,
      mode,
      0,                       // uid
      0,                       // gid
      S_ISDIR(mode) ? 2u : 1,  // nlink: one per file, so the kernel never looks for hard links
      0,                       // mtime
      static_cast<uint32_t>(data_size),
      0,  // devmajor
      0,  // devminor
      rdev_major,
      rdev_minor,
      static_cast<uint32_t>(name.size() + 1),
      0,  // check (only the "070702" format has one)
  };
  std::memcpy(out, kMagic.data(), kMagic.size());
  for (size_t i = 0; i < std::size(fields); ++i) put_hex8(out + kMagic.size() + i * 8, fields[i]);
  std::memcpy(out + kHeaderSize, name.data(), name.size());
  // The name's NUL and the padding after it.
  std::memset(out + kHeaderSize + name.size(), 0, name_end(name) - kHeaderSize - name.size());
  return out + name_end(name);
}

}  // namespace

void CpioWriter::add(Entry entry) {
  // The names and sizes come from vmm itself; a bad one is a bug, said plainly.
  if (entry.name.empty() || entry.name.front() == '/' ||
      entry.name.find('\0') != std::string::npos) {
    fail("initramfs: bad archive entry name \"{}\" (must be relative, non-empty)", entry.name);
  }
  if (entry.size > std::numeric_limits<uint32_t>::max()) {
    fail("initramfs: {} is {} bytes, more than a cpio entry holds", entry.name, entry.size);
  }
  entries_.push_back(std::move(entry));
}

void CpioWriter::add_directory(std::string_view name, uint32_t permissions) {
  add({.name = std::string(name), .mode = S_IFDIR | permissions});
}

void CpioWriter::add_char_device(std::string_view name, uint32_t permissions, uint32_t major,
                                 uint32_t minor) {
  add({.name = std::string(name),
       .mode = S_IFCHR | permissions,
       .rdev_major = major,
       .rdev_minor = minor});
}

void CpioWriter::add_file(std::string_view name, uint32_t permissions,
                          std::span<const uint8_t> data) {
  add({.name = std::string(name),
       .mode = S_IFREG | permissions,
       .size = data.size(),
       .data = data});
}

void CpioWriter::add_file(std::string_view name, uint32_t permissions, size_t size, Filler fill) {
  add({.name = std::string(name),
       .mode = S_IFREG | permissions,
       .size = size,
       .fill = std::move(fill)});
}

size_t CpioWriter::size() const {
  size_t size = entry_size(kTrailerName, 0);
  for (const Entry& entry : entries_) size += entry_size(entry.name, entry.size);
  return size;
}

void CpioWriter::write_to(std::span<uint8_t> out) const {
  if (out.size() != size()) {
    fail("initramfs: {} bytes of room for a {}-byte archive", out.size(), size());
  }
  uint8_t* at = out.data();
  uint32_t inode = 1;
  for (const Entry& entry : entries_) {
    at = put_header(at, inode++, entry.name, entry.mode, entry.size, entry.rdev_major,
                    entry.rdev_minor);
    if (entry.fill) {
      entry.fill({at, entry.size});
    } else if (entry.size > 0) {
      std::memcpy(at, entry.data.data(), entry.size);
    }
    const size_t padding = align_up(entry.size, kAlignment) - entry.size;
    std::memset(at + entry.size, 0, padding);
    at += entry.size + padding;
  }
  put_header(at, inode, kTrailerName, 0, 0, 0, 0);
}

std::vector<uint8_t> CpioWriter::archive() const {
  std::vector<uint8_t> archive(size());
  write_to(archive);
  return archive;
}

}  // namespace vmm::boot
