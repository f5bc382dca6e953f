#pragma once

#include <cstdint>

#include "base/memory/guest_memory.hpp"
#include "firmware/acpi/description.hpp"

namespace vmm::acpi {

// Validates `platform` and writes RSDP, XSDT, FADT, MADT and DSDT into
// [layout::kAcpiStart, layout::kAcpiEnd) of guest memory. The RSDP comes first, at kAcpiStart
// (16-byte aligned inside the BIOS area), so a legacy scan of 0xe0000-0xfffff finds it as well
// as the address handed to the kernel. Returns the RSDP address. Throws vmm::Error for an invalid
// description, tables that do not fit, or an ACPI area outside guest RAM.
uint64_t write_acpi_tables(const GuestMemory& memory, const PlatformDescription& platform);

}  // namespace vmm::acpi
