#pragma once

#include <cstdint>

#include "base/memory/guest_memory.hpp"

namespace vmm::firmware {

// Writes a reset vector at layout::kResetVector: real-mode code that writes `reset_value` to I/O
// port `reset_port`, then halts.
//
// Why: a CPU that "jumps to the BIOS" lands there, and Linux does exactly that to reboot a
// hardware-reduced ACPI machine without EFI: its reboot path tries EFI, then jumps to the BIOS
// reset vector (machine_real_restart). With no firmware behind it, the guest would spin through
// zeroed memory forever; with this stub, `reboot` resets the machine through the reset device.
void write_reset_vector(const GuestMemory& memory, uint16_t reset_port, uint8_t reset_value);

}  // namespace vmm::firmware
