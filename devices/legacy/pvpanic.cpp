#include "devices/legacy/pvpanic.hpp"

#include <spdlog/spdlog.h>

#include "devices/legacy/port_io.hpp"

namespace vmm::devices {

void PvPanic::read(uint64_t offset, std::span<uint8_t> data) {
  read_ports(offset, data, kPortCount,
             [](uint64_t) -> uint8_t { return kPanicked | kCrashLoaded; });
}

void PvPanic::write(uint64_t offset, std::span<const uint8_t> data) {
  uint8_t events = 0;
  write_ports(offset, data, kPortCount, [&](uint64_t, uint8_t value) { events |= value; });
  if (events & kCrashLoaded) spdlog::debug("pvpanic: guest reports a crash kernel taking over");
  if (events & kPanicked) {
    spdlog::debug("pvpanic: guest panicked");
    events_.guest_request(GuestRequest::kPanic);
  }
}

}  // namespace vmm::devices
