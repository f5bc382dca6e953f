#include "vmm/machine/platform.hpp"

#include <memory>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "devices/legacy/acpi_power.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/pvpanic.hpp"
#include "devices/legacy/serial_16550.hpp"

namespace vmm {

uint32_t virtio_gsi(uint32_t index) {
  const uint64_t gsi = index < 3 ? uint64_t{5} + index : uint64_t{6} + index;  // no wrap to 0
  if (gsi >= kIoapicPins) {
    fail("virtio device {}: GSI {} is beyond the IOAPIC's pins 0-{}", index, gsi, kIoapicPins - 1);
  }
  return static_cast<uint32_t>(gsi);
}

void insert_guest_request_ports(devices::Bus& pio, devices::PlatformEvents& events,
                                bool debug_exit) {
  if (debug_exit) {
    pio.insert(devices::DebugExit::kPortBase, devices::DebugExit::kPortCount,
               std::make_shared<devices::DebugExit>(events));
  }
  pio.insert(devices::AcpiPower::kPortBase, devices::AcpiPower::kPortCount,
             std::make_shared<devices::AcpiPower>(events));
  pio.insert(devices::PvPanic::kPortBase, devices::PvPanic::kPortCount,
             std::make_shared<devices::PvPanic>(events));
}

acpi::PlatformDescription platform_description(uint32_t cpu_count) {
  acpi::PlatformDescription platform{};
  platform.cpu_count = cpu_count;
  platform.lapic_address = layout::kLapicAddress;
  platform.ioapic_address = layout::kIoapicAddress;
  platform.ioapic_id = 0;
  platform.ioapic_gsi_base = 0;
  // Hardware-reduced ACPI: sleep control and status are the two ports of AcpiPower.
  platform.sleep_control_port = devices::AcpiPower::kPortBase;
  platform.sleep_status_port = devices::AcpiPower::kPortBase + 1;
  platform.s5_sleep_type = devices::AcpiPower::kS5SleepType;
  // The i8042's pulse-reset command (0xfe to its command port) doubles as the ACPI reset
  // register, so the machine has one reset device.
  platform.reset_port = devices::I8042::kPortBase + 4;
  platform.reset_value = 0xfe;
  platform.i8042_present = true;
  platform.rtc_century_register = devices::CmosRtc::kCenturyRegister;
  platform.vm_generation_id = acpi::VmGenerationId{layout::kVmGenerationId, kVmGenerationIdGsi};

  constexpr acpi::Interrupt kEdgeHigh{0, false, false};
  auto isa_irq = [&](uint32_t gsi) {
    acpi::Interrupt irq = kEdgeHigh;
    irq.gsi = gsi;
    return irq;
  };
  platform.devices.push_back({"COM1",
                              "PNP0501",
                              1,
                              {{devices::Serial16550::kCom1Base, devices::Serial16550::kPortCount}},
                              {},
                              {isa_irq(kSerialGsi)}});
  // No IRQ: the RTC raises none, and a declared one would make hwclock wait for an update
  // interrupt that never comes.
  platform.devices.push_back({"RTC0",
                              "PNP0B00",
                              0,
                              {{devices::CmosRtc::kPortBase, devices::CmosRtc::kPortCount}},
                              {},
                              {}});
  platform.devices.push_back({"PS2K",
                              "PNP0303",
                              0,
                              {{devices::I8042::kPortBase, 1}, {devices::I8042::kPortBase + 4, 1}},
                              {},
                              {isa_irq(kKeyboardGsi)}});
  platform.devices.push_back({"PEVT",
                              "QEMU0001",
                              0,
                              {{devices::PvPanic::kPortBase, devices::PvPanic::kPortCount}},
                              {},
                              {}});
  return platform;
}

}  // namespace vmm
