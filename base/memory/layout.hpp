#pragma once

#include <cstdint>

// The guest-physical address map every vmm machine shares. Boot code, firmware tables and
// devices take their addresses from here so they never disagree.
namespace vmm::layout {

// Low memory used by the direct-boot path (below 1 MiB, all inside RAM).
inline constexpr uint64_t kBootGdt = 0x500;
inline constexpr uint64_t kBootIdt = 0x520;
inline constexpr uint64_t kPvhStartInfo = 0x6000;  // hvm_start_info + memmap (PVH entry)
inline constexpr uint64_t kZeroPage = 0x7000;      // struct boot_params
inline constexpr uint64_t kBootStack = 0x8ff0;     // initial rsp
inline constexpr uint64_t kPageTables = 0x9000;    // PML4, PDPT, 4 PDs: identity map of 4 GiB
inline constexpr uint64_t kPageTablesEnd = 0xf000;
inline constexpr uint64_t kCmdline = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;  // 64 KiB, further limited by the kernel header
inline constexpr uint64_t kEbdaStart = 0x9fc00;   // RAM below this is usable in e820
inline constexpr uint64_t kLowRamEnd = 0xa0000;   // legacy VGA hole starts here

// The BIOS area, in order: the ACPI tables, where a legacy RSDP scan also finds them; the VM
// Generation ID; the MP table
// (firmware/mptable.hpp), inside 0xf0000-0xfffff where Linux scans for its floating pointer (its
// largest, 255 CPUs, is under 8 KiB); the last 16 bytes hold the reset vector, where a CPU in real
// mode at F000:FFF0 starts (firmware/reset_vector.hpp).
inline constexpr uint64_t kAcpiStart = 0xe0000;
// The VM Generation ID's 16 bytes (devices/legacy/vm_generation_id.hpp), in a page of the BIOS
// area of its own: e820 already reserves it, and the ACPI tables (at most ~64 KiB for 4096 CPUs)
// keep the 116 KiB below.
inline constexpr uint64_t kVmGenerationId = 0xfd000;
inline constexpr uint64_t kAcpiEnd = kVmGenerationId;
inline constexpr uint64_t kMpTableStart = 0xfe000;
inline constexpr uint64_t kMpTableEnd = 0xffff0;
inline constexpr uint64_t kResetVector = 0xffff0;
inline constexpr uint64_t kBiosAreaEnd = 0x100000;
static_assert(kVmGenerationId + 0x1000 <= kMpTableStart,
              "the VM Generation ID's page must not overlap the MP table");
static_assert(kAcpiEnd <= kMpTableStart && kMpTableEnd <= kResetVector,
              "the ACPI tables, the MP table and the reset vector must not overlap");
static_assert(kMpTableStart >= 0xf0000 && kMpTableStart % 16 == 0,
              "Linux scans 0xf0000-0xfffff for the MP floating pointer, on 16-byte boundaries");

inline constexpr uint64_t kHighMemStart = 0x100000;  // 1 MiB: default kernel load address

// The 32-bit MMIO hole: RAM stops here and resumes at 4 GiB.
inline constexpr uint64_t kMmioHoleStart = 0xc0000000;
inline constexpr uint64_t kMmioHoleEnd = 0x100000000;
inline constexpr uint64_t kVirtioMmioStart = 0xd0000000;  // one 4 KiB window per device
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint64_t kIoapicAddress = 0xfec00000;
inline constexpr uint64_t kLapicAddress = 0xfee00000;
// KVM needs three pages for the (unused on SVM) TSS and one for the EPT identity map.
inline constexpr uint64_t kKvmTssAddress = 0xfffbd000;
inline constexpr uint64_t kKvmIdentityMapAddress = 0xfffbc000;

inline constexpr uint64_t kHighRamStart = 0x100000000;  // RAM above the hole

}  // namespace vmm::layout
