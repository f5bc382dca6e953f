#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"

namespace vmm::boot {

// A validated ELF64 x86-64 kernel (vmlinux). Spans point into the caller's bytes.
struct ElfKernel {
  struct Segment {
    uint64_t paddr;
    uint64_t memsz;  // >= data.size(); the rest is zeroed (bss)
    std::span<const uint8_t> data;
  };
  std::vector<Segment> segments;      // the PT_LOAD segments
  uint64_t entry64 = 0;               // physical address of e_entry (64-bit boot)
  std::optional<uint32_t> pvh_entry;  // XEN_ELFNOTE_PHYS32_ENTRY, when the kernel has one
  uint64_t start = 0;                 // lowest physical address loaded
  uint64_t end = 0;                   // one past the highest
};

bool looks_like_elf(std::span<const uint8_t> image);

// Validates headers, segments and notes; `name` ("--kernel /path") starts every error message.
ElfKernel parse_elf(std::span<const uint8_t> image, const std::string& name);

// Copies each segment to its physical address and zeroes its bss. Segments must lie in RAM at or
// above 1 MiB, clear of the boot structures in low memory.
void load_elf(const GuestMemory& memory, const ElfKernel& kernel, const std::string& name);

}  // namespace vmm::boot
