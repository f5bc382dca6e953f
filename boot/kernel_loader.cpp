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

BootEntry load_kernel(const GuestMemory& memory, const KernelLoadConfig& config) {
  const std::string kernel_name = "--kernel " + config.kernel_path;
  const std::vector<uint8_t> bytes = read_file(config.kernel_path, "--kernel");
  LoadedKernel kernel;
  if (looks_like_elf(bytes)) {
    kernel = load_vmlinux(memory, bytes, kernel_name);
  } else if (looks_like_bzimage(bytes)) {
    kernel = load_bzimage(memory, bytes, kernel_name);
  } else {
    fail("{}: not a Linux kernel (neither a bzImage nor an ELF vmlinux)", kernel_name);
  }

  BootInfo info;
  write_cmdline(memory, config.cmdline, kernel.header.cmdline_size);
  info.cmdline_address = layout::kCmdline;
  info.rsdp_address = config.rsdp_address;
  if (!config.initrd_path.empty()) {
    const std::string initrd_name = "--initrd " + config.initrd_path;
    const std::vector<uint8_t> initrd = read_file(config.initrd_path, "--initrd");
    info.initrd_address = place_initrd(initrd.size(), kernel.header.initrd_addr_max,
                                       memory.low_ram_end(), kernel.start, kernel.end, initrd_name);
    info.initrd_size = initrd.size();
    memory.write_or_throw(info.initrd_address, initrd, initrd_name);
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
