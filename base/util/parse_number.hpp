#pragma once

#include <charconv>
#include <concepts>
#include <optional>
#include <string_view>

namespace vmm {

// The whole of `text` as a decimal number of type T, or nullopt: for an empty text, spaces, a
// leading '+' or "0x", anything after the digits, or a value T can't hold (a '-' only where T is
// signed). std::from_chars alone stops at the first non-digit and reports success; std::stoul
// takes spaces, signs and "0x".
template <std::integral T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const char* const last = text.data() + text.size();
  const auto [end, error] = std::from_chars(text.data(), last, value);
  if (text.empty() || error != std::errc() || end != last) return std::nullopt;
  return value;
}

}  // namespace vmm
