// The small port-I/O devices behind the PIO bus: the CMOS RTC (index/data registers, time
// writes that move its offset from a fuzzer-chosen host clock, the SET staging), pvpanic, the
// ACPI sleep/reset registers and the debug-exit port. Accesses go through devices::Bus, at any
// port and width, as a vCPU's PIO exits do.
//
// Input: a u32 host clock (seconds since the epoch, UTC: 1970 to 2106; the host's clock is not
// the guest's to choose, only what it writes on top of it), then accesses: u8 kind (bit 0 write,
// bit 1 any port instead of one near a device, bits 4-7 width), u16 port or u8 device-relative
// choice, u64 value for writes.

#include <cstdint>
#include <cstring>
#include <ctime>
#include <iterator>
#include <memory>
#include <span>

#include "devices/bus.hpp"
#include "devices/legacy/acpi_power.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/pvpanic.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {
namespace {

using devices::AcpiPower;
using devices::Bus;
using devices::CmosRtc;
using devices::DebugExit;
using devices::PvPanic;

struct Device {
  uint16_t base;
  uint64_t count;
};
constexpr Device kDevices[] = {{CmosRtc::kPortBase, CmosRtc::kPortCount},
                               {PvPanic::kPortBase, PvPanic::kPortCount},
                               {AcpiPower::kPortBase, AcpiPower::kPortCount},
                               {DebugExit::kPortBase, DebugExit::kPortCount}};

void run(Reader& in) {
  const auto clock = static_cast<time_t>(in.u32());
  FakePlatformEvents events;
  Bus pio("pio");
  pio.insert(CmosRtc::kPortBase, CmosRtc::kPortCount,
             std::make_shared<CmosRtc>([clock] { return clock; }));
  pio.insert(PvPanic::kPortBase, PvPanic::kPortCount, std::make_shared<PvPanic>(events));
  pio.insert(AcpiPower::kPortBase, AcpiPower::kPortCount, std::make_shared<AcpiPower>(events));
  pio.insert(DebugExit::kPortBase, DebugExit::kPortCount, std::make_shared<DebugExit>(events));

  while (!in.empty()) {
    const uint8_t kind = in.u8();
    const size_t width = (kind >> 4) % 9;
    uint64_t port;
    if (kind & 2) {
      port = in.u16();
    } else {
      const uint8_t choice = in.u8();
      const Device& device = kDevices[choice % std::size(kDevices)];
      port = device.base + (choice >> 2) % (device.count + 2);
    }
    uint8_t bytes[8] = {};
    if (kind & 1) {
      const uint64_t value = in.u64();
      std::memcpy(bytes, &value, sizeof(bytes));
      pio.write(port, std::span<const uint8_t>(bytes, width));
    } else {
      pio.read(port, std::span<uint8_t>(bytes, width));
    }
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
