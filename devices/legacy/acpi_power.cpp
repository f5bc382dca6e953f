#include "devices/legacy/acpi_power.hpp"

#include <spdlog/spdlog.h>

#include "devices/legacy/port_io.hpp"

namespace vmm::devices {

namespace {

constexpr uint64_t kSleepControl = 0;
constexpr uint8_t kSleepEnable = 0x20;  // SLP_EN
constexpr int kSleepTypeShift = 2;      // SLP_TYP, bits 2-4
constexpr uint8_t kSleepTypeMask = 0x7;

}  // namespace

void AcpiPower::read(uint64_t offset, std::span<uint8_t> data) {
  read_ports(offset, data, kPortCount, [](uint64_t) -> uint8_t { return 0; });
}

void AcpiPower::write(uint64_t offset, std::span<const uint8_t> data) {
  bool power_off = false;
  write_ports(offset, data, kPortCount, [&](uint64_t port, uint8_t value) {
    if (port != kSleepControl) return;  // sleep status: write-1-to-clear bits that never set
    const uint8_t sleep_type = (value >> kSleepTypeShift) & kSleepTypeMask;
    if ((value & kSleepEnable) && sleep_type == kS5SleepType) {
      power_off = true;
    } else {
      spdlog::debug("acpi: sleep control write {:#04x} (SLP_TYP {}) ignored", value, sleep_type);
    }
  });
  if (power_off) {
    spdlog::debug("acpi: guest entered S5, powering off");
    events_.guest_request(GuestRequest::kPowerOff);
  }
}

}  // namespace vmm::devices
