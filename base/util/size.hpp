#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vmm {

inline constexpr uint64_t KiB = 1024;
inline constexpr uint64_t MiB = 1024 * KiB;
inline constexpr uint64_t GiB = 1024 * MiB;

// Parses "512M", "2G", "1024K", "4096" (bytes), "1T"; the suffix is case-insensitive and may be
// followed by "iB" or "B". Returns nullopt for anything else, including overflow.
std::optional<uint64_t> parse_size(std::string_view text);

constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}
constexpr uint64_t align_down(uint64_t value, uint64_t alignment) {
  return value & ~(alignment - 1);
}

}  // namespace vmm
