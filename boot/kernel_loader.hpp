#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/memory/guest_memory.hpp"
#include "boot/cpu_setup.hpp"

namespace vmm::boot {

// What to load, already in memory (read and checked before the machine exists).
struct KernelLoadInput {
  std::span<const uint8_t> kernel;
  std::string kernel_name;          // "--kernel /path": starts every error about it
  std::span<const uint8_t> initrd;  // empty: no initrd
  std::string initrd_name;
  std::string cmdline;
  uint64_t rsdp_address = 0;  // 0: the kernel scans the BIOS area for the RSDP
};

// The same, from files.
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

// Throws vmm::Error naming `name` unless `kernel` is a bzImage or an ELF vmlinux this loader can
// boot (what load_kernel checks before it writes guest memory).
void check_kernel(std::span<const uint8_t> kernel, const std::string& name);

// Loads a bzImage or an ELF vmlinux, the initrd and the command line into `memory` and writes the
// zero page (or, for a vmlinux with a PVH note, hvm_start_info). Errors name the option and path.
BootEntry load_kernel(const GuestMemory& memory, const KernelLoadInput& input);
// Reads the files first.
BootEntry load_kernel(const GuestMemory& memory, const KernelLoadConfig& config);

// The boot vCPU's registers for `entry`; writes the GDT (and page tables for 64-bit entry).
BootCpuState boot_cpu_state(const GuestMemory& memory, const BootEntry& entry);

}  // namespace vmm::boot
