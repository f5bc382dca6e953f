#include "devices/legacy/debug_exit.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace vmm::devices {

void DebugExit::read(uint64_t, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
}

void DebugExit::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != 0 || data.empty()) {
    spdlog::debug("debug-exit: write of {} bytes at offset {} ignored", data.size(), offset);
    return;
  }
  const int code = data[0];
  spdlog::debug("debug-exit: guest exits with status {}", code);
  events_.guest_request(GuestRequest::kDebugExit, code);
}

}  // namespace vmm::devices
