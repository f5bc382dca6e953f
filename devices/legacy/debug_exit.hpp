#pragma once

#include <cstdint>
#include <span>

#include "devices/bus.hpp"
#include "devices/platform_events.hpp"

namespace vmm::devices {

// The test-guest exit port, at QEMU isa-debug-exit's usual iobase: a write of V at port 0xf4
// (`outb`, or a wider write whose low byte is V) asks the machine to stop, and the VMM process
// then exits with status V itself. QEMU's (V << 1) | 1 convention is deliberately not used, so a
// guest can report success as 0. Reads return 0xff (nothing there to read).
//
// Registered over kPortCount = 4 ports (0xf4-0xf7) so `outw`/`outl` at 0xf4 reach the device
// instead of being refused by the bus as straddling a one-port range; writes at 0xf5-0xf7 are
// ignored. Stateless, so no lock.
class DebugExit final : public BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0xf4;
  static constexpr uint64_t kPortCount = 4;

  // `events` must outlive the device.
  explicit DebugExit(PlatformEvents& events) : events_(events) {}

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PlatformEvents& events_;
};

}  // namespace vmm::devices
