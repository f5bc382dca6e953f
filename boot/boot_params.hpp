#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "boot/setup_header.hpp"

namespace vmm::boot {

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  bool operator==(const E820Entry&) const = default;
};

// The guest's memory map, sorted and non-overlapping: RAM from `memory`'s regions minus the legacy
// hole [EBDA, 1 MiB) and the 32-bit MMIO hole; the EBDA and the BIOS area holding the ACPI tables
// reported as reserved.
std::vector<E820Entry> build_e820_map(const GuestMemory& memory);

// The highest page-aligned address for an initrd of `size` bytes that ends at or below
// min(initrd_addr_max, low_ram_end - 1) and stays clear of the kernel at [kernel_start,
// kernel_end). initrd_addr_max == 0 means the protocol's historical default. `name` is
// "--initrd /path" for the error.
uint64_t place_initrd(uint64_t size, uint32_t initrd_addr_max, uint64_t low_ram_end,
                      uint64_t kernel_start, uint64_t kernel_end, const std::string& name);

// Writes the NUL-terminated command line at layout::kCmdline after checking its length against
// the kernel's limit (`kernel_max` bytes, without the NUL) and the space reserved for it.
void write_cmdline(const GuestMemory& memory, const std::string& cmdline, uint64_t kernel_max);

// What the kernel must be told about, wherever it is told (zero page or PVH start_info).
struct BootInfo {
  uint64_t cmdline_address = 0;
  uint64_t initrd_address = 0;
  uint64_t initrd_size = 0;   // 0: no initrd
  uint64_t rsdp_address = 0;  // 0: let the kernel scan the BIOS area
  std::vector<E820Entry> e820;
};

// The zero page: the image's setup header with the loader's fields filled in.
BootParams build_zero_page(const SetupHeader& image_header, const BootInfo& info);

// The PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h), version 1.
inline constexpr uint32_t kHvmStartMagic = 0x336ec578;

struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;
  uint32_t memmap_entries;
  uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

// Where the pieces of the PVH boot information go inside [kPvhStartInfo, kZeroPage).
inline constexpr uint64_t kPvhModlistOffset = 0x40;
inline constexpr uint64_t kPvhMemmapOffset = 0x80;

// Writes hvm_start_info, its module list (the initrd) and its memory map at layout::kPvhStartInfo.
void write_pvh_start_info(const GuestMemory& memory, const BootInfo& info);

}  // namespace vmm::boot
