#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/vhost_user/message.hpp"

namespace vmm::devices::testing {

// A backend's message as it goes over the socket: the header (request code, flags, payload size)
// and the payload. Written into a vector sized once: GCC 12 at -O2 (the TSan build) reports a
// false -Warray-bounds for an insert after the header.
inline std::vector<uint8_t> reply(vhost_user::Request request, const std::vector<uint8_t>& payload,
                                  uint32_t flags = vhost_user::kFlagVersion |
                                                   vhost_user::kFlagReply) {
  const std::array<uint32_t, 3> header{static_cast<uint32_t>(request), flags,
                                       static_cast<uint32_t>(payload.size())};
  static_assert(sizeof(header) == vhost_user::kHeaderSize);
  std::vector<uint8_t> out(vhost_user::kHeaderSize + payload.size());
  std::memcpy(out.data(), header.data(), sizeof(header));
  std::ranges::copy(payload, out.begin() + vhost_user::kHeaderSize);
  return out;
}

}  // namespace vmm::devices::testing
