#pragma once

#include <cstdint>
#include <span>

#include "devices/bus.hpp"
#include "devices/platform_events.hpp"

namespace vmm::devices {

// QEMU's pvpanic I/O port (one byte at 0x505, the "QEMU0001" ACPI device): reading it returns
// the events the host understands, and the guest's panic notifier writes the event that happened.
// PANICKED asks the machine to stop with a panic; CRASH_LOADED (a kdump kernel is taking over) is
// only logged, so the crash kernel gets to run. Stateless, so no lock.
class PvPanic final : public BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0x505;
  static constexpr uint64_t kPortCount = 1;
  static constexpr uint8_t kPanicked = 0x01;
  static constexpr uint8_t kCrashLoaded = 0x02;

  // `events` must outlive the device.
  explicit PvPanic(PlatformEvents& events) : events_(events) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PlatformEvents& events_;
};

}  // namespace vmm::devices
