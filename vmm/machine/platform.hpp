#pragma once

#include <cstdint>

#include "firmware/acpi/description.hpp"

namespace vmm {

// The legacy platform every vmm machine has, in one place: which GSI each ISA device raises and
// how the firmware tables describe it.
inline constexpr uint32_t kSerialGsi = 4;
inline constexpr uint32_t kKeyboardGsi = 1;
// The Generic Event Device's, which tells the guest its VM Generation ID changed (after a restore):
// COM2's ISA IRQ, unused here, edge-triggered and active high like the GED's.
inline constexpr uint32_t kVmGenerationIdGsi = 3;

// The GSI of virtio device `index` (< kMaxVirtioDevices): 5-7, then 9-23. The ISA devices keep
// theirs (0 and 2 are the PIT's, 8 the RTC's, though it raises none).
constexpr uint32_t virtio_gsi(uint32_t index) {
  return index < 3 ? 5 + index : 6 + index;
}

// The description the ACPI tables are built from.
acpi::PlatformDescription platform_description(uint32_t cpu_count);

}  // namespace vmm
