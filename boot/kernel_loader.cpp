#include "boot/kernel_loader.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "base/util/size.hpp"
#include "boot/boot_params.hpp"
#include "boot/bzimage.hpp"
#include "boot/elf.hpp"

namespace vmm::boot {

namespace {

// What the rest of loading needs to know about a kernel once it is in memory.
struct LoadedKernel {
  BootEntry::Mode mode;
  uint64_t entry;
  uint64_t start;
  uint64_t end;
  SetupHeader header;  // the zero page's header (64-bit entry only)
};

LoadedKernel load_bzimage(const GuestMemory& memory, std::span<const uint8_t> bytes,
                          const std::string& name) {
  const BzImage image = parse_bzimage(bytes, name);
  const uint64_t load = bzimage_load_address(image, memory.low_ram_end(), name);
  memory.write_or_throw(load, image.payload, name);
  return {BootEntry::Mode::kLinux64, load + kEntry64Offset, load, load + image.memory_span(),
          image.header};
}

// A vmlinux has no setup header of its own; the 64-bit entry still wants a zero page that looks
// like it came from a protocol-2.12 loader.
SetupHeader synthetic_header() {
  SetupHeader hdr{};
  hdr.boot_flag = kBootFlag;
  hdr.header = kHdrSMagic;
  hdr.version = kMinBootProtocol;
  hdr.kernel_alignment = 2 * MiB;
  hdr.cmdline_size = layout::kCmdlineMax - 1;
  hdr.xloadflags = kXlfKernel64;
  return hdr;
}

LoadedKernel load_vmlinux(const GuestMemory& memory, std::span<const uint8_t> bytes,
                          const std::string& name) {
  const ElfKernel kernel = parse_elf(bytes, name);
  load_elf(memory, kernel, name);
  if (kernel.pvh_entry) {
    return {BootEntry::Mode::kPvh32, *kernel.pvh_entry, kernel.start, kernel.end,
            synthetic_header()};
  }
  return {BootEntry::Mode::kLinux64, kernel.entry64, kernel.start, kernel.end, synthetic_header()};
}

}  // namespace

void check_kernel(std::span<const uint8_t> kernel, const std::string& name) {
  if (looks_like_elf(kernel)) {
    parse_elf(kernel, name);
  } else if (looks_like_bzimage(kernel)) {
    parse_bzimage(kernel, name);
  } else {
    fail("{}: not a Linux kernel (neither a bzImage nor an ELF vmlinux)", name);
  }
}

BootEntry load_kernel(const GuestMemory& memory, const KernelLoadConfig& config) {
  const std::vector<uint8_t> kernel = read_file(config.kernel_path, "--kernel");
  std::vector<uint8_t> initrd;
  if (!config.initrd_path.empty()) initrd = read_file(config.initrd_path, "--initrd");
  return load_kernel(memory, KernelLoadInput{.kernel = kernel,
                                             .kernel_name = "--kernel " + config.kernel_path,
                                             .initrd = initrd,
                                             .initrd_name = "--initrd " + config.initrd_path,
                                             .cmdline = config.cmdline,
                                             .rsdp_address = config.rsdp_address});
}

BootEntry load_kernel(const GuestMemory& memory, const KernelLoadInput& input) {
  const std::string& kernel_name = input.kernel_name;
  LoadedKernel kernel;
  if (looks_like_elf(input.kernel)) {
    kernel = load_vmlinux(memory, input.kernel, kernel_name);
  } else if (looks_like_bzimage(input.kernel)) {
    kernel = load_bzimage(memory, input.kernel, kernel_name);
  } else {
    fail("{}: not a Linux kernel (neither a bzImage nor an ELF vmlinux)", kernel_name);
  }

  BootInfo info;
  write_cmdline(memory, input.cmdline, kernel.header.cmdline_size);
  info.cmdline_address = layout::kCmdline;
  info.rsdp_address = input.rsdp_address;
  if (!input.initrd.empty()) {
    info.initrd_address =
        place_initrd(input.initrd.size(), kernel.header.initrd_addr_max, memory.low_ram_end(),
                     kernel.start, kernel.end, input.initrd_name);
    info.initrd_size = input.initrd.size();
    memory.write_or_throw(info.initrd_address, input.initrd, input.initrd_name);
  }
  info.e820 = build_e820_map(memory);

  if (kernel.mode == BootEntry::Mode::kPvh32) {
    write_pvh_start_info(memory, info);
    return {kernel.mode, kernel.entry, layout::kPvhStartInfo};
  }
  const BootParams params = build_zero_page(kernel.header, info);
  if (!memory.write_obj(layout::kZeroPage, params)) {
    fail("the zero page does not fit in guest memory at {:#x}", layout::kZeroPage);
  }
  return {kernel.mode, kernel.entry, layout::kZeroPage};
}

BootCpuState boot_cpu_state(const GuestMemory& memory, const BootEntry& entry) {
  switch (entry.mode) {
    case BootEntry::Mode::kLinux64:
      return long_mode_cpu_state(memory, entry.entry, entry.boot_info);
    case BootEntry::Mode::kPvh32: return pvh_cpu_state(memory, entry.entry, entry.boot_info);
  }
  fail("internal error: unknown boot mode {}", static_cast<int>(entry.mode));
}

}  // namespace vmm::boot
