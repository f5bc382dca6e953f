// The ELF vmlinux loader (program headers, PT_LOAD segments, the PVH entry note). The input is
// the kernel file: parse_elf() and what it promises about the segments, then the whole load
// through load_kernel() (kernel_input.hpp). Every refusal must be a vmm::Error.

#include <cstdint>
#include <span>

#include "boot/elf.hpp"
#include "tests/fuzz/kernel_input.hpp"

namespace vmm::fuzz {
namespace {

void check_parse(std::span<const uint8_t> image) {
  const boot::ElfKernel kernel = boot::parse_elf(image, "--kernel fuzz");
  for (const auto& segment : kernel.segments) {
    VMM_FUZZ_CHECK(segment.data.empty() ||
                       (segment.data.data() >= image.data() &&
                        segment.data.data() + segment.data.size() <= image.data() + image.size()),
                   "a segment's data lies outside the file");
    VMM_FUZZ_CHECK(segment.memsz >= segment.data.size(), "memsz below the file size");
    VMM_FUZZ_CHECK(segment.paddr >= kernel.start && segment.paddr + segment.memsz <= kernel.end,
                   "a segment outside [start, end)");
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_kernel_file<vmm::fuzz::check_parse>)
