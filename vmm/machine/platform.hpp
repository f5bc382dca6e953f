#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "devices/bus.hpp"
#include "devices/platform_events.hpp"
#include "firmware/acpi/description.hpp"

namespace vmm {

// The legacy platform every vmm machine has, in one place: which GSI each ISA device raises and
// how the firmware tables describe it.
inline constexpr uint32_t kSerialGsi = 4;
inline constexpr uint32_t kKeyboardGsi = 1;
// The Generic Event Device's, which tells the guest its VM Generation ID changed (after a restore):
// COM2's ISA IRQ, unused here, edge-triggered and active high like the GED's.
inline constexpr uint32_t kVmGenerationIdGsi = 3;

// The in-kernel IOAPIC has pins for GSIs 0-23 only: a device on any other GSI would never
// interrupt.
inline constexpr uint32_t kIoapicPins = KVM_IOAPIC_NUM_PINS;
static_assert(kSerialGsi < kIoapicPins && kKeyboardGsi < kIoapicPins &&
              kVmGenerationIdGsi < kIoapicPins);

// The GSI of virtio device `index`: 5-7, then 9-23. The ISA devices keep theirs (0 and 2 are the
// PIT's, 8 the RTC's, though it raises none). Throws vmm::Error for a device past the IOAPIC's
// last pin (validate_config's kMaxVirtioDevices keeps a configuration from getting there).
uint32_t virtio_gsi(uint32_t index);

// Puts the ports through which the guest asks the machine to end on `pio`, reporting to `events`:
// the ACPI sleep registers and pvpanic always, the debug-exit port only with `debug_exit`
// (MachineConfig::debug_exit: it lets the guest choose vmm's exit status).
void insert_guest_request_ports(devices::Bus& pio, devices::PlatformEvents& events,
                                bool debug_exit);

// The description the ACPI tables are built from.
acpi::PlatformDescription platform_description(uint32_t cpu_count);

}  // namespace vmm
