#pragma once

// Test-side reading of ACPI tables the way an OS does: raw little-endian fields at the offsets the
// ACPI 6.3 spec gives, independent of the structs the builders use.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::acpi::testing {

inline uint64_t le(std::span<const uint8_t> bytes, size_t offset, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size; ++i) value |= uint64_t{bytes[offset + i]} << (8 * i);
  return value;
}

inline std::string text(std::span<const uint8_t> bytes, size_t offset, size_t size) {
  return std::string(reinterpret_cast<const char*>(bytes.data() + offset), size);
}

inline uint8_t byte_sum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return sum;
}

inline bool contains(std::span<const uint8_t> haystack, std::span<const uint8_t> needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

inline bool contains(std::span<const uint8_t> haystack, std::string_view needle) {
  return contains(haystack,
                  std::span(reinterpret_cast<const uint8_t*>(needle.data()), needle.size()));
}

// A Generic Address Structure at `offset`.
struct Gas {
  uint8_t space, bit_width, bit_offset, access_size;
  uint64_t address;
};

inline Gas gas(std::span<const uint8_t> bytes, size_t offset) {
  return Gas{bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3],
             le(bytes, offset + 4, 8)};
}

struct MadtEntry {
  uint8_t type;
  std::vector<uint8_t> bytes;  // the whole entry, type and length included
};

// The interrupt controller structures after the MADT's 44-byte fixed part.
inline std::vector<MadtEntry> madt_entries(std::span<const uint8_t> madt) {
  std::vector<MadtEntry> entries;
  size_t offset = 44;
  while (offset + 2 <= madt.size()) {
    uint8_t length = madt[offset + 1];
    if (length < 2 || offset + length > madt.size()) break;
    entries.push_back({madt[offset], {madt.begin() + offset, madt.begin() + offset + length}});
    offset += length;
  }
  return entries;
}

}  // namespace vmm::acpi::testing
