#pragma once

// Reads a newc cpio archive back, for the tests: each entry's header fields, name and data, with
// every field and bound checked (a malformed archive fails the test with a reason).

#include <gtest/gtest.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::boot::testing {

struct CpioEntry {
  uint32_t inode = 0;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint32_t mtime = 0;
  uint32_t rdev_major = 0;
  uint32_t rdev_minor = 0;
  std::string name;
  std::vector<uint8_t> data;

  std::string text() const { return std::string(data.begin(), data.end()); }
};

struct CpioArchive {
  std::vector<CpioEntry> entries;  // in archive order, without the trailer
  bool has_trailer = false;

  const CpioEntry* find(std::string_view name) const {
    for (const CpioEntry& entry : entries) {
      if (entry.name == name) return &entry;
    }
    return nullptr;
  }
};

// Parses `archive`; on a malformed one, adds a test failure and returns what it read so far.
inline CpioArchive read_cpio(std::span<const uint8_t> archive) {
  constexpr size_t kHeaderSize = 110;
  const auto text = [&](size_t at, size_t size) {
    return std::string_view(reinterpret_cast<const char*>(archive.data()) + at, size);
  };
  const auto align4 = [](size_t value) { return (value + 3) & ~size_t{3}; };
  CpioArchive result;
  size_t at = 0;
  while (at < archive.size()) {
    if (at % 4 != 0 || archive.size() - at < kHeaderSize) {
      ADD_FAILURE() << "entry at " << at << ": misaligned or truncated header";
      return result;
    }
    if (text(at, 6) != "070701") {
      ADD_FAILURE() << "entry at " << at << ": magic " << text(at, 6);
      return result;
    }
    uint32_t fields[13];
    for (size_t i = 0; i < 13; ++i) {
      const std::string digits(text(at + 6 + i * 8, 8));
      if (digits.find_first_not_of("0123456789ABCDEF") != std::string::npos) {
        ADD_FAILURE() << "entry at " << at << ": field " << i << " is \"" << digits
                      << "\" (not upper-case hex)";
        return result;
      }
      fields[i] = static_cast<uint32_t>(std::stoul(digits, nullptr, 16));
    }
    const size_t name_size = fields[11];
    const size_t data_size = fields[6];
    const size_t data_at = align4(at + kHeaderSize + name_size);
    if (name_size == 0 || data_at > archive.size() || data_size > archive.size() - data_at) {
      ADD_FAILURE() << "entry at " << at << ": name or data runs past the end";
      return result;
    }
    if (archive[at + kHeaderSize + name_size - 1] != 0) {
      ADD_FAILURE() << "entry at " << at << ": name not NUL-terminated";
      return result;
    }
    CpioEntry entry;
    entry.inode = fields[0];
    entry.mode = fields[1];
    entry.uid = fields[2];
    entry.gid = fields[3];
    entry.nlink = fields[4];
    entry.mtime = fields[5];
    entry.rdev_major = fields[9];
    entry.rdev_minor = fields[10];
    entry.name = std::string(text(at + kHeaderSize, name_size - 1));
    entry.data.assign(archive.begin() + data_at, archive.begin() + data_at + data_size);
    at = align4(data_at + data_size);
    if (entry.name == "TRAILER!!!") {
      result.has_trailer = true;
      if (at != archive.size()) ADD_FAILURE() << "bytes after the trailer";
      return result;
    }
    result.entries.push_back(std::move(entry));
  }
  ADD_FAILURE() << "no TRAILER!!!";
  return result;
}

}  // namespace vmm::boot::testing
