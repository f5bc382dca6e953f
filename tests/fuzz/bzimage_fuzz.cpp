// The bzImage loader. The input is the kernel file: parse_bzimage() and the load-address choice
// for guests of several sizes (pure arithmetic on the fuzzed header), then the whole load
// through load_kernel() (kernel_input.hpp). Every refusal must be a vmm::Error.

#include <cstdint>
#include <span>

#include "base/memory/layout.hpp"
#include "boot/bzimage.hpp"
#include "tests/fuzz/kernel_input.hpp"

namespace vmm::fuzz {
namespace {

void check_parse(std::span<const uint8_t> image) {
  const boot::BzImage parsed = boot::parse_bzimage(image, "--kernel fuzz");
  VMM_FUZZ_CHECK(parsed.payload.data() >= image.data() &&
                     parsed.payload.data() + parsed.payload.size() <= image.data() + image.size(),
                 "the payload lies outside the image");
  parsed.memory_span();
  // Tiny, the fuzz guest, the largest below the MMIO hole.
  for (const uint64_t low_ram_end : {uint64_t{2} << 20, kKernelRamSize, layout::kMmioHoleStart}) {
    try {
      const uint64_t load = boot::bzimage_load_address(parsed, low_ram_end, "--kernel fuzz");
      VMM_FUZZ_CHECK(load >= layout::kHighMemStart && load < low_ram_end,
                     "load address %#llx for RAM ending at %#llx",
                     static_cast<unsigned long long>(load),
                     static_cast<unsigned long long>(low_ram_end));
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_kernel_file<vmm::fuzz::check_parse>)
