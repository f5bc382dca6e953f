#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "firmware/acpi/description.hpp"

// Builders for the ACPI tables of a hardware-reduced x86 platform (ACPI 6.3 layouts). Each returns
// the complete table with its length and checksum filled in. Builders that take a
// PlatformDescription expect one that passed validate().
namespace vmm::acpi {

using Bytes = std::vector<uint8_t>;

// Sizes of the fixed-size tables, so callers can lay tables out before building them.
inline constexpr uint64_t kRsdpLength = 36;
inline constexpr uint64_t kFadtLength = 276;
inline constexpr uint64_t xsdt_length(uint64_t entries) {
  return 36 + 8 * entries;
}

// The byte that makes `bytes` (with this byte added) sum to zero modulo 256.
uint8_t checksum(std::span<const uint8_t> bytes);

// ACPI 2.0+ RSDP (revision 2, 36 bytes) pointing at the XSDT; RsdtAddress is 0.
Bytes build_rsdp(uint64_t xsdt_address);
Bytes build_xsdt(std::span<const uint64_t> table_addresses);
// FADT revision 6.3: HW_REDUCED_ACPI, X_DSDT, sleep control/status and reset registers.
Bytes build_fadt(const PlatformDescription& platform, uint64_t dsdt_address);
// MADT: a local APIC (or x2APIC for IDs >= 255) per CPU, the I/O APIC, LINT1 as NMI, and the
// described interrupt source overrides.
Bytes build_madt(const PlatformDescription& platform);
// DSDT: one \_SB_ device per described device, the VM Generation ID's VGEN and GED_ when there is
// one, and \_S5_ for soft-off.
Bytes build_dsdt(const PlatformDescription& platform);

}  // namespace vmm::acpi
