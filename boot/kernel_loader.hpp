#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/memory/guest_memory.hpp"
#include "boot/boot_params.hpp"
#include "boot/cpu_setup.hpp"
#include "boot/setup_header.hpp"

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

// A kernel in guest memory: how it is entered and the bytes it occupies.
struct LoadedKernel {
  BootEntry::Mode mode;
  uint64_t entry;
  uint64_t start;
  uint64_t end;
  SetupHeader header;  // the zero page's header (a vmlinux gets a synthetic one)
};

// The boot information load_kernel wrote, and where it put the initrd.
struct BootLayout {
  BootEntry entry;
  BootInfo info;
};

// Throws vmm::Error naming `name` unless `kernel` is a bzImage or an ELF vmlinux this loader can
// boot (what load_kernel checks before it writes guest memory).
void check_kernel(std::span<const uint8_t> kernel, const std::string& name);

// Loads a bzImage or an ELF vmlinux, the initrd and the command line into `memory` and writes the
// zero page (or, for a vmlinux with a PVH note, hvm_start_info). Errors name the option and path.
BootEntry load_kernel(const GuestMemory& memory, const KernelLoadInput& input);
// Reads the files first.
BootEntry load_kernel(const GuestMemory& memory, const KernelLoadConfig& config);

// The steps of load_kernel, apart so that a fuzzer can lay out guests of any size without
// copying a gigabyte of initrd. load_kernel_image puts a bzImage or vmlinux into `memory`;
// write_boot_info places an initrd of `initrd_size` bytes (0: none) around `kernel`, then writes
// the command line and the zero page or PVH start info: everything but the initrd's bytes
// (input.initrd is not read).
LoadedKernel load_kernel_image(const GuestMemory& memory, std::span<const uint8_t> kernel,
                               const std::string& name);
BootLayout write_boot_info(const GuestMemory& memory, const LoadedKernel& kernel,
                           const KernelLoadInput& input, uint64_t initrd_size);

// The boot vCPU's registers for `entry`; writes the GDT (and page tables for 64-bit entry).
BootCpuState boot_cpu_state(const GuestMemory& memory, const BootEntry& entry);

}  // namespace vmm::boot
