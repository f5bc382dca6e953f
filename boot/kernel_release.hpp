#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace vmm::boot {

// The kernel's release as `uname -r` prints it ("6.1.0-57-cloud-amd64"): for a bzImage, the first
// word of the string its setup header's kernel_version points at; for an ELF vmlinux, the word
// after its "Linux version " banner. nullopt when the image carries none (vmm's tiny test guests)
// or when what it carries is not a plausible release. `image` is user input: every offset is
// checked.
std::optional<std::string> kernel_release(std::span<const uint8_t> image);

// A release names a folder (/lib/modules/<release>): it starts with a digit and is printable ASCII
// without spaces or '/', so it can never climb out of the folder it is joined to.
bool is_plausible_release(std::string_view text);

}  // namespace vmm::boot
