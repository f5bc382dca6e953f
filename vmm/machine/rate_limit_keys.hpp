#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "vmm/machine_config.hpp"

namespace vmm {

struct RateLimitField {
  std::string_view name;  // without a prefix
  uint64_t RateLimitConfig::*field;
};
inline constexpr std::array<RateLimitField, 4> kRateLimitFields = {{
    {"bw", &RateLimitConfig::bytes_per_second},
    {"bw_burst", &RateLimitConfig::bytes_burst},
    {"iops", &RateLimitConfig::ops_per_second},
    {"iops_burst", &RateLimitConfig::ops_burst},
}};

// How a RateLimitConfig's fields are named on the command line (--disk PATH,bw=10M,iops=500) and
// in the control socket's set-rate-limit: bw and bw_burst (bytes), iops and iops_burst
// (operations), each after `prefix` ("" for a disk, "rx_" or "tx_" for a NIC). Sets the field
// `key` names to `value`; false if it names none.
bool set_rate_limit_field(RateLimitConfig& limit, std::string_view prefix, std::string_view key,
                          uint64_t value);
// "bw=, bw_burst=, iops=, iops_burst=" after `prefix`, for error messages.
std::string rate_limit_keys(std::string_view prefix);

}  // namespace vmm
