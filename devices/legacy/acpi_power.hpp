#pragma once

#include <cstdint>
#include <span>

#include "devices/bus.hpp"
#include "devices/platform_events.hpp"

namespace vmm::devices {

// The hardware-reduced ACPI sleep registers (the FADT's SLEEP_CONTROL_REG and SLEEP_STATUS_REG,
// one byte each): offset 0 (port 0x600) is sleep control, offset 1 (0x601) sleep status.
//
// Writing sleep control with SLP_EN (bit 5) set and SLP_TYP (bits 2-4) equal to kS5SleepType
// powers the machine off; the DSDT's \_S5 package must carry that value. Every other write is
// ignored (logged at debug): there is no sleep state to enter, and the guest stays running.
// Both registers read 0: nothing ever wakes from a sleep we don't enter, so WAK_STS never sets.
// Stateless, so no lock.
class AcpiPower final : public BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0x600;
  static constexpr uint64_t kPortCount = 2;
  static constexpr uint8_t kS5SleepType = 5;

  // `events` must outlive the device.
  explicit AcpiPower(PlatformEvents& events) : events_(events) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PlatformEvents& events_;
};

}  // namespace vmm::devices
