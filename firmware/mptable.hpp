#pragma once

#include <cstdint>

#include "base/memory/guest_memory.hpp"
#include "firmware/acpi/description.hpp"

// The Intel MultiProcessor Specification 1.4 table: how a kernel built without ACPI, or booted with
// acpi=off, finds its CPUs, its I/O APIC and the routing of the ISA interrupts.
namespace vmm::firmware {

// The most CPUs an MP table describes: processor entries hold 8-bit APIC IDs, and 0xff means
// "every local APIC".
inline constexpr uint32_t kMaxMpTableCpus = 255;

// Writes the MP floating pointer at layout::kMpTableStart and the configuration table right after
// it, describing the machine the ACPI tables describe from the same `platform`: one enabled
// processor per CPU (APIC IDs 0..cpu_count-1, the first the boot processor), the ISA bus, the
// I/O APIC, the ISA IRQs 0-15 routed as the MADT's interrupt source overrides route them, every
// other described device interrupt, and LINT0 as ExtINT and LINT1 as NMI on every local APIC.
// Throws vmm::Error for an invalid description, more than kMaxMpTableCpus CPUs, an interrupt the
// table's 8-bit IRQ and pin numbers can't name, or an MP table area outside guest RAM.
void write_mp_table(const GuestMemory& memory, const acpi::PlatformDescription& platform);

}  // namespace vmm::firmware
