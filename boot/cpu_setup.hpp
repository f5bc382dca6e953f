#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/memory/guest_memory.hpp"

namespace vmm::boot {

// Everything the machine applies to the boot vCPU before its first KVM_RUN. Application processors
// stay in KVM's reset state and are started by the guest with INIT/SIPI.
struct BootCpuState {
  kvm_regs regs;
  kvm_sregs sregs;
  kvm_fpu fpu;
  std::vector<std::pair<uint32_t, uint64_t>> msrs;
};

// The boot GDT at layout::kBootGdt. 0x10/0x18 match Linux's __BOOT_CS/__BOOT_DS; 0x08 is the flat
// 32-bit code segment for the PVH entry.
inline constexpr uint16_t kBootCode32Selector = 0x08;
inline constexpr uint16_t kBootCode64Selector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;

// Writes an identity map of the low 4 GiB with 2 MiB pages at layout::kPageTables (PML4, one PDPT,
// four page directories). Returns the PML4's address, the value for CR3.
uint64_t write_identity_page_tables(const GuestMemory& memory);

// Writes the GDT and an empty IDT (any exception before the kernel installs its own is a triple
// fault, which ends the VM instead of running garbage).
void write_boot_gdt(const GuestMemory& memory);

// 64-bit Linux boot protocol: long mode with paging on, rip = entry, rsi = zero page. Writes the
// GDT, IDT and page tables.
BootCpuState long_mode_cpu_state(const GuestMemory& memory, uint64_t entry, uint64_t zero_page);

// PVH: 32-bit protected mode with paging off, flat segments, ebx = hvm_start_info. Writes the GDT
// and IDT.
BootCpuState pvh_cpu_state(const GuestMemory& memory, uint64_t entry, uint64_t start_info);

}  // namespace vmm::boot
