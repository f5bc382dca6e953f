#pragma once

#include <cstdint>
#include <string>

#include "base/memory/guest_memory.hpp"
#include "boot/cpu_setup.hpp"

namespace vmm::boot {

struct KernelLoadConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: no initrd
  std::string cmdline;
  uint64_t rsdp_address = 0;  // 0: the kernel scans the BIOS area for the RSDP
};

struct BootEntry {
  enum class Mode { kLinux64, kPvh32 };
  Mode mode;
  uint64_t entry;      // guest-physical entry point
  uint64_t boot_info;  // zero page (kLinux64) or hvm_start_info (kPvh32)
};

// Loads a bzImage or an ELF vmlinux, the initrd and the command line into `memory` and writes the
// zero page (or, for a vmlinux with a PVH note, hvm_start_info). Errors name the option and path.
BootEntry load_kernel(const GuestMemory& memory, const KernelLoadConfig& config);

// The boot vCPU's registers for `entry`; writes the GDT (and page tables for 64-bit entry).
BootCpuState boot_cpu_state(const GuestMemory& memory, const BootEntry& entry);

}  // namespace vmm::boot
