#pragma once

#include <cstdint>

#include "firmware/acpi/description.hpp"

namespace vmm {

// The legacy platform every vmm machine has, in one place: which GSI each ISA device raises and
// how the firmware tables describe it.
inline constexpr uint32_t kSerialGsi = 4;
inline constexpr uint32_t kKeyboardGsi = 1;

// The description the ACPI tables are built from.
acpi::PlatformDescription platform_description(uint32_t cpu_count);

}  // namespace vmm
