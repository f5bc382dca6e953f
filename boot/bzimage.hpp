#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "boot/setup_header.hpp"

namespace vmm::boot {

// A validated bzImage: the setup header as the kernel wrote it and the protected-mode kernel that
// gets copied into guest memory. `payload` points into the caller's bytes.
struct BzImage {
  SetupHeader header;
  std::span<const uint8_t> payload;

  // Bytes the kernel occupies from its load address while it decompresses and runs.
  uint64_t memory_span() const;
};

// True when `image` carries the "HdrS" magic at its place (format detection only; no validation).
bool looks_like_bzimage(std::span<const uint8_t> image);

// Validates `image` for a 64-bit direct boot. `name` ("--kernel /path") starts every error message.
BzImage parse_bzimage(std::span<const uint8_t> image, const std::string& name);

// Where the protected-mode kernel goes in a guest whose RAM below the MMIO hole ends at
// `low_ram_end`: pref_address for a relocatable kernel when it fits, else the lowest suitably
// aligned address from 1 MiB; 1 MiB for a non-relocatable kernel. Throws when it does not fit.
uint64_t bzimage_load_address(const BzImage& image, uint64_t low_ram_end, const std::string& name);

}  // namespace vmm::boot
