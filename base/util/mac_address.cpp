#include "base/util/mac_address.hpp"

#include <fmt/format.h>

#include <cctype>

namespace vmm {

namespace {

std::optional<uint8_t> hex_digit(char c) {
  if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
  const char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower >= 'a' && lower <= 'f') return static_cast<uint8_t>(lower - 'a' + 10);
  return std::nullopt;
}

}  // namespace

std::optional<MacAddress> parse_mac(const std::string& text) {
  if (text.size() != 17) return std::nullopt;
  MacAddress mac{};
  for (size_t i = 0; i < mac.size(); ++i) {
    const auto high = hex_digit(text[3 * i]);
    const auto low = hex_digit(text[3 * i + 1]);
    if (!high || !low) return std::nullopt;
    if (i + 1 < mac.size() && text[3 * i + 2] != ':') return std::nullopt;
    mac[i] = static_cast<uint8_t>(*high << 4 | *low);
  }
  return mac;
}

std::string format_mac(const MacAddress& mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3],
                     mac[4], mac[5]);
}

MacAddress stable_mac(const std::string& seed) {
  // FNV-1a: tiny, stable across builds and hosts (std::hash is neither guaranteed).
  uint64_t hash = 0xcbf29ce484222325ull;
  for (const char c : seed) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  // 0x02: locally administered (bit 1), unicast (bit 0 clear); 0x56 0x4d: "VM".
  return {0x02,
          0x56,
          0x4d,
          static_cast<uint8_t>(hash >> 16),
          static_cast<uint8_t>(hash >> 8),
          static_cast<uint8_t>(hash)};
}

}  // namespace vmm
