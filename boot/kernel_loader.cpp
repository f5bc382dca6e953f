#include "boot/kernel_loader.hpp"

#include <algorithm>
#include <optional>
#include <utility>
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

LoadedKernel load_kernel_image(const GuestMemory& memory, std::span<const uint8_t> kernel,
                               const std::string& name) {
  if (looks_like_elf(kernel)) return load_vmlinux(memory, kernel, name);
  if (looks_like_bzimage(kernel)) return load_bzimage(memory, kernel, name);
  fail("{}: not a Linux kernel (neither a bzImage nor an ELF vmlinux)", name);
}

BootLayout write_boot_info(const GuestMemory& memory, const LoadedKernel& kernel,
                           const KernelLoadInput& input, uint64_t initrd_size) {
  BootInfo info;
  write_cmdline(memory, input.cmdline, kernel.header.cmdline_size);
  info.cmdline_address = layout::kCmdline;
  info.rsdp_address = input.rsdp_address;
  if (initrd_size != 0) {
    info.initrd_address =
        place_initrd(initrd_size, kernel.header.initrd_addr_max, memory.low_ram_end(), kernel.start,
                     kernel.end, input.initrd_name);
    info.initrd_size = initrd_size;
  }
  info.e820 = build_e820_map(memory);

  if (kernel.mode == BootEntry::Mode::kPvh32) {
    write_pvh_start_info(memory, info);
    return {{kernel.mode, kernel.entry, layout::kPvhStartInfo}, std::move(info)};
  }
  const BootParams params = build_zero_page(kernel.header, info);
  if (!memory.write_obj(layout::kZeroPage, params)) {
    fail("the zero page does not fit in guest memory at {:#x}", layout::kZeroPage);
  }
  return {{kernel.mode, kernel.entry, layout::kZeroPage}, std::move(info)};
}

BootEntry load_kernel(const GuestMemory& memory, const KernelLoadInput& input) {
  const LoadedKernel kernel = load_kernel_image(memory, input.kernel, input.kernel_name);
  const BootLayout boot = write_boot_info(memory, kernel, input, input.initrd.size());
  if (!input.initrd.empty()) {
    memory.write_or_throw(boot.info.initrd_address, input.initrd, input.initrd_name);
  }
  return boot.entry;
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
