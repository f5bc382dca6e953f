#pragma once

#include <cstdint>
#include <span>

namespace vmm::boot {

// vmm's own init program (boot/initramfs/init/vmm_init.c), a static x86-64 executable: the /init of
// the initramfs vmm builds (boot/initramfs/init/init_abi.h has the archive's layout). Built with
// the project and carried in vmm_boot's read-only data; valid for the life of the process.
std::span<const uint8_t> init_program();

}  // namespace vmm::boot
