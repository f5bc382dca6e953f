#include "vmm/machine/rate_limit_keys.hpp"

#include <fmt/format.h>

namespace vmm {

bool set_rate_limit_field(RateLimitConfig& limit, std::string_view prefix, std::string_view key,
                          uint64_t value) {
  if (!key.starts_with(prefix)) return false;
  key.remove_prefix(prefix.size());
  for (const auto& [name, field] : kRateLimitFields) {
    if (key == name) {
      limit.*field = value;
      return true;
    }
  }
  return false;
}

std::string rate_limit_keys(std::string_view prefix) {
  std::string keys;
  for (const auto& [name, field] : kRateLimitFields) {
    keys += fmt::format("{}{}{}=", keys.empty() ? "" : ", ", prefix, name);
  }
  return keys;
}

}  // namespace vmm
