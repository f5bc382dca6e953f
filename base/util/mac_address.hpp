#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace vmm {

using MacAddress = std::array<uint8_t, 6>;

// "52:54:00:12:34:56" (hex digits, either case, colon-separated); nullopt for anything else.
std::optional<MacAddress> parse_mac(const std::string& text);
// Lower-case, colon-separated.
std::string format_mac(const MacAddress& mac);
// A unicast, locally administered address derived from `seed` (a tap's name): the same seed gives
// the same address on every run, different seeds almost surely different ones.
MacAddress stable_mac(const std::string& seed);

}  // namespace vmm
