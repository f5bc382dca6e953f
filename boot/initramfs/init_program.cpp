#include "boot/initramfs/init_program.hpp"

// Defined by the generated init_program_blob.S (boot/initramfs/init/CMakeLists.txt).
extern "C" const uint8_t vmm_init_program_start[];
extern "C" const uint8_t vmm_init_program_end[];

namespace vmm::boot {

std::span<const uint8_t> init_program() {
  return {vmm_init_program_start, vmm_init_program_end};
}

}  // namespace vmm::boot
