// The ELF vmlinux loader (program headers, PT_LOAD segments, the PVH entry note). The input is
// the kernel file: parse_elf() and what it promises about the segments, then the whole load
// through load_kernel() (kernel_input.hpp). Every refusal must be a vmm::Error.

#include <cstdint>
#include <span>

#include "boot/elf.hpp"
#include "tests/fuzz/kernel_input.hpp"

namespace vmm::fuzz {
namespace {

void run(std::span<const uint8_t> image) {
  try {
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
  } catch (const Error&) {
  }
  load_kernel_file(image);
}

}  // namespace
}  // namespace vmm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vmm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmm::fuzz::run({data, size});
  return 0;
}
