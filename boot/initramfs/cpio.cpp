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

// newc's numbers: eight upper-case hex digits, no terminator.
void put_hex8(uint8_t* out, uint32_t value) {
  constexpr char kDigits[] = "0123456789ABCDEF";
  for (int i = 7; i >= 0; --i, value >>= 4) out[i] = kDigits[value & 0xf];
}

}  // namespace

void CpioWriter::add(Entry entry) {
  // The names and sizes come from vmm itself; a bad one is a bug, said plainly.
  if (entry.name.empty() || entry.name.front() == '/' ||
      entry.name.find('\0') != std::string::npos) {
    fail("initramfs: bad archive entry name \"{}\" (must be relative, non-empty)", entry.name);
  }
  if (entry.data.size() > std::numeric_limits<uint32_t>::max()) {
    fail("initramfs: {} is {} bytes, more than a cpio entry holds", entry.name, entry.data.size());
  }
  entries_.push_back(std::move(entry));
}

void CpioWriter::add_directory(std::string_view name, uint32_t permissions) {
  add({std::string(name), S_IFDIR | permissions, {}});
}

void CpioWriter::add_char_device(std::string_view name, uint32_t permissions, uint32_t major,
                                 uint32_t minor) {
  add({std::string(name), S_IFCHR | permissions, {}, major, minor});
}

void CpioWriter::add_file(std::string_view name, uint32_t permissions,
                          std::span<const uint8_t> data) {
  add({std::string(name), S_IFREG | permissions, data});
}

std::vector<uint8_t> CpioWriter::finish() {
  entries_.push_back({std::string(kTrailerName), 0, {}});
  size_t size = 0;
  for (const Entry& entry : entries_)
    size += name_end(entry.name) + align_up(entry.data.size(), kAlignment);
  std::vector<uint8_t> archive(size);  // zero-filled: the padding
  uint8_t* out = archive.data();
  uint32_t inode = 1;
  for (const Entry& entry : entries_) {
    const uint32_t fields[13] = {
        inode++,
        entry.mode,
        0,  // uid
        0,  // gid
        S_ISDIR(entry.mode) ? 2u
                            : 1,  // nlink: one per file, so the kernel never looks for hard links
        0,                        // mtime
        static_cast<uint32_t>(entry.data.size()),
        0,  // devmajor
        0,  // devminor
        entry.rdev_major,
        entry.rdev_minor,
        static_cast<uint32_t>(entry.name.size() + 1),
        0,  // check (only the "070702" format has one)
    };
    std::memcpy(out, kMagic.data(), kMagic.size());
    for (size_t i = 0; i < std::size(fields); ++i) put_hex8(out + kMagic.size() + i * 8, fields[i]);
    std::memcpy(out + kHeaderSize, entry.name.data(), entry.name.size());
    out += name_end(entry.name);
    if (!entry.data.empty()) std::memcpy(out, entry.data.data(), entry.data.size());
    out += align_up(entry.data.size(), kAlignment);
  }
  entries_.clear();
  return archive;
}

}  // namespace vmm::boot
