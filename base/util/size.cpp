#include "base/util/size.hpp"

#include <cctype>
#include <charconv>

namespace vmm {

std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t number = 0;
  const char* begin = text.data();
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc() || ptr == begin) return std::nullopt;
  std::string_view suffix(ptr, static_cast<size_t>(end - ptr));
  uint64_t multiplier = 1;
  if (!suffix.empty()) {
    switch (std::toupper(static_cast<unsigned char>(suffix.front()))) {
      case 'K': multiplier = KiB; break;
      case 'M': multiplier = MiB; break;
      case 'G': multiplier = GiB; break;
      case 'T': multiplier = 1024 * GiB; break;
      case 'B': multiplier = 1; break;
      default: return std::nullopt;
    }
    suffix.remove_prefix(1);
    if (multiplier != 1 && (suffix == "iB" || suffix == "ib" || suffix == "B" || suffix == "b")) {
      suffix = {};
    }
    if (!suffix.empty()) return std::nullopt;
  }
  if (number > UINT64_MAX / multiplier) return std::nullopt;
  return number * multiplier;
}

}  // namespace vmm
