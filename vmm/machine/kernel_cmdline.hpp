#pragma once

#include <string>
#include <string_view>

#include "vmm/machine_config.hpp"

namespace vmm {

// The kernel command line a machine boots with. A config's `cmdline`, when set, is used as it is.
// Otherwise it is composed in three parts, so that the user's words come last and win (the kernel
// takes the last of a repeated parameter):
//   1. kDefaultCmdline (the console on COM1, and a panic that resets);
//   2. what vmm knows: `root=/dev/vda rw` (`ro` for a readonly=on disk) when there is a disk and
//      neither part names a root; a `virtio_mmio.device=` entry per virtio device when the user
//      turns ACPI off (QEMU microvm's convention: with ACPI on, the DSDT describes them);
//   3. the config's `append`.
std::string compose_cmdline(const MachineConfig& config);

// Whether `cmdline` (the kernel's part, before a "--") has parameter `name`, as `name` or
// `name=...`.
bool cmdline_has(std::string_view cmdline, std::string_view name);
// The value of the last `name=value` in the kernel's part of `cmdline` ("" if absent).
std::string cmdline_value(std::string_view cmdline, std::string_view name);

}  // namespace vmm
