// The boot layout: where load_kernel puts the initrd, the memory map it hands the kernel (in the
// zero page or the PVH start info) and the command line, for fuzzed RAM sizes (4 KiB to 1 TiB,
// around the 32-bit MMIO hole too), initrd sizes (none to 2^64 - 1), command lines (up to past
// the 64 KiB limit) and kernels: a bzImage built from fuzzed header fields (loaded for real), or
// a kernel extent as a vmlinux leaves it, 64-bit or PVH entry. The RAM is GuestMemory::allocate's
// (reserved, touched only where something is written); the initrd's bytes are never copied,
// write_boot_info lays it out (kernel_loader.hpp).
//
// Either the layout is refused with vmm::Error, or, read back from guest memory:
// - the memory map is sorted and non-overlapping, its RAM entries lie inside RAM and outside the
//   legacy and MMIO holes, and together they are all the RAM outside those holes;
// - the initrd has the size asked for, lies wholly inside RAM (one RAM entry of the map) above
//   1 MiB and below the kernel's initrd_addr_max, and overlaps neither the kernel nor the boot
//   structures (GDT, start info, zero page, stack, page tables, command line, EBDA and BIOS area);
// - the command line fits the kernel's limit and the reserved space, and is NUL-terminated;
// - the zero page or start info says exactly that: map, initrd, command line.
//
// Input: u8 RAM choice, u64 (kRamSizes below); u8 initrd choice, u64 (initrd_size below); u32
// command-line length (mod kCmdlineMax + 64), u8 length of a pattern, the pattern (repeated to
// the length); u8 flags (bit 0: a PVH kernel extent instead of a bzImage, bit 1: an RSDP
// address); then the kernel: for a bzImage u8 relocatable, u8 log2(kernel_alignment),
// u64 pref_address, u32 init_size, u32 initrd_addr_max, u32 cmdline_size; for an extent u8 mode
// (bit 0: PVH), u64 start, u64 length, u32 initrd_addr_max, u32 cmdline_size.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"
#include "boot/boot_params.hpp"
#include "boot/kernel_loader.hpp"
#include "boot/setup_header.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {
namespace {

using boot::BootLayout;
using boot::E820Entry;
using boot::LoadedKernel;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxRam = uint64_t{1} << 40;  // --memory's limit
// boot.rst: initrd_addr_max 0 means this.
constexpr uint64_t kDefaultInitrdAddrMax = 0x37ffffff;

uint64_t pages(uint64_t value, uint64_t max_bytes) {
  return (value % (max_bytes / kPage) + 1) * kPage;
}

uint64_t ram_size(Reader& in) {
  const uint8_t choice = in.u8();
  const uint64_t value = in.u64();
  switch (choice % 4) {
    case 0: return pages(value, 64 * MiB);  // tiny to small, below the kernel's 1 MiB too
    case 1: return layout::kMmioHoleStart - 64 * MiB + pages(value, 128 * MiB);  // at the hole
    case 2: return pages(value, 8 * GiB);
    default: return pages(value, kMaxRam);
  }
}

uint64_t initrd_size(Reader& in, uint64_t low_ram_end) {
  const uint8_t choice = in.u8();
  const uint64_t value = in.u64();
  switch (choice % 5) {
    case 0: return 0;  // no initrd
    case 1: return value % (64 * MiB);
    case 2: return low_ram_end - std::min(low_ram_end, value % (64 * MiB));  // about all of RAM
    case 3: return value % (4 * GiB);
    default: return value;
  }
}

std::string cmdline(Reader& in) {
  const size_t length = in.u32() % (layout::kCmdlineMax + 64);
  const auto pattern = in.bytes(in.u8());
  std::string line(length, 'x');
  for (size_t i = 0; i < length && !pattern.empty(); ++i) {
    line[i] = static_cast<char>(pattern[i % pattern.size()]);
  }
  return line;
}

// A bzImage of four setup sectors and a page of payload, its header fields fuzzed where they
// decide the layout; the bzImage target fuzzes the rest.
std::vector<uint8_t> bzimage(Reader& in) {
  constexpr size_t kSetupSects = 4;
  constexpr size_t kPayload = 4096;
  std::vector<uint8_t> image((kSetupSects + 1) * boot::kSectorSize + kPayload, 0x90);
  boot::SetupHeader hdr{};
  hdr.setup_sects = kSetupSects;
  hdr.boot_flag = boot::kBootFlag;
  hdr.header = boot::kHdrSMagic;
  hdr.version = boot::kMinBootProtocol;
  hdr.syssize = kPayload / 16;
  hdr.xloadflags = boot::kXlfKernel64;
  hdr.relocatable_kernel = in.u8() & 1;
  hdr.kernel_alignment = uint32_t{1} << (in.u8() % 32);
  hdr.pref_address = in.u64() & ~uint64_t{hdr.kernel_alignment - 1};
  hdr.init_size = in.u32();
  hdr.initrd_addr_max = in.u32();
  hdr.cmdline_size = in.u32();
  std::memcpy(image.data() + boot::kSetupHeaderOffset, &hdr, sizeof(hdr));
  image[0x201] = 0xff;  // the header's jump: past every field of SetupHeader
  return image;
}

LoadedKernel kernel_extent(Reader& in, uint64_t ram) {
  LoadedKernel kernel{};
  kernel.mode =
      (in.u8() & 1) != 0 ? boot::BootEntry::Mode::kPvh32 : boot::BootEntry::Mode::kLinux64;
  kernel.start = in.u64() % (ram + 4 * GiB);
  kernel.end = kernel.start + in.u64() % (ram + 1);
  kernel.entry = kernel.start;
  kernel.header.initrd_addr_max = in.u32();
  kernel.header.cmdline_size = in.u32();
  return kernel;
}

struct Range {
  uint64_t start;
  uint64_t end;
  const char* what;
};

bool overlaps(uint64_t start, uint64_t end, const Range& r) {
  return start < r.end && r.start < end;
}

// RAM outside [kEbdaStart, 1 MiB) and the MMIO hole: what the map must call RAM.
uint64_t usable_ram(const GuestMemory& memory) {
  uint64_t total = 0;
  for (const auto& region : memory.regions()) {
    uint64_t size = region.size;
    for (const Range hole : {Range{layout::kEbdaStart, layout::kHighMemStart, ""},
                             Range{layout::kMmioHoleStart, layout::kMmioHoleEnd, ""}}) {
      const uint64_t start = std::max(region.guest_base, hole.start);
      const uint64_t end = std::min(region.guest_base + region.size, hole.end);
      if (start < end) size -= end - start;
    }
    total += size;
  }
  return total;
}

void check_e820(const GuestMemory& memory, const std::vector<E820Entry>& map) {
  uint64_t ram = 0;
  for (size_t i = 0; i < map.size(); ++i) {
    const E820Entry& e = map[i];
    VMM_FUZZ_CHECK(e.size != 0 && e.addr + e.size > e.addr, "e820 entry %zu is empty or wraps", i);
    if (i > 0) {
      VMM_FUZZ_CHECK(map[i - 1].addr + map[i - 1].size <= e.addr,
                     "e820 entries %zu and %zu overlap or are out of order", i - 1, i);
    }
    if (e.type != boot::kE820Ram) continue;
    VMM_FUZZ_CHECK(memory.contains(e.addr, e.size), "e820 RAM at %#llx (%#llx bytes) is not RAM",
                   static_cast<unsigned long long>(e.addr),
                   static_cast<unsigned long long>(e.size));
    for (const Range hole :
         {Range{layout::kEbdaStart, layout::kHighMemStart, "the legacy hole"},
          Range{layout::kMmioHoleStart, layout::kMmioHoleEnd, "the MMIO hole"}}) {
      VMM_FUZZ_CHECK(!overlaps(e.addr, e.addr + e.size, hole), "e820 RAM at %#llx overlaps %s",
                     static_cast<unsigned long long>(e.addr), hole.what);
    }
    ram += e.size;
  }
  VMM_FUZZ_CHECK(ram == usable_ram(memory), "e820 gives %#llx bytes of RAM, there are %#llx",
                 static_cast<unsigned long long>(ram),
                 static_cast<unsigned long long>(usable_ram(memory)));
}

void check_initrd(const BootLayout& boot, const LoadedKernel& kernel, uint64_t requested,
                  const std::string& line) {
  const uint64_t addr = boot.info.initrd_address;
  const uint64_t size = boot.info.initrd_size;
  VMM_FUZZ_CHECK(size == requested, "initrd of %#llx bytes laid out as %#llx",
                 static_cast<unsigned long long>(requested), static_cast<unsigned long long>(size));
  if (size == 0) return;
  const uint64_t end = addr + size;
  VMM_FUZZ_CHECK(end > addr && addr % kPage == 0 && addr >= layout::kHighMemStart,
                 "initrd at %#llx (%#llx bytes)", static_cast<unsigned long long>(addr),
                 static_cast<unsigned long long>(size));
  const bool in_ram_entry =
      std::any_of(boot.info.e820.begin(), boot.info.e820.end(), [&](const E820Entry& e) {
        return e.type == boot::kE820Ram && e.addr <= addr && end <= e.addr + e.size;
      });
  VMM_FUZZ_CHECK(in_ram_entry, "initrd at %#llx (%#llx bytes) is not inside one e820 RAM entry",
                 static_cast<unsigned long long>(addr), static_cast<unsigned long long>(size));
  const uint64_t addr_max =
      kernel.header.initrd_addr_max == 0 ? kDefaultInitrdAddrMax : kernel.header.initrd_addr_max;
  VMM_FUZZ_CHECK(end - 1 <= addr_max, "initrd ends at %#llx, past initrd_addr_max %#llx",
                 static_cast<unsigned long long>(end), static_cast<unsigned long long>(addr_max));
  for (const Range& r : {Range{layout::kBootGdt, layout::kPageTablesEnd,
                               "the GDT, start info, zero page, stack or page tables"},
                         Range{layout::kCmdline, layout::kCmdline + line.size() + 1, "the cmdline"},
                         Range{layout::kEbdaStart, layout::kBiosAreaEnd, "the BIOS area"},
                         Range{kernel.start, kernel.end, "the kernel"}}) {
    VMM_FUZZ_CHECK(!overlaps(addr, end, r), "initrd at %#llx (%#llx bytes) overlaps %s",
                   static_cast<unsigned long long>(addr), static_cast<unsigned long long>(size),
                   r.what);
  }
}

void check_cmdline(const GuestMemory& memory, const LoadedKernel& kernel, const std::string& line) {
  VMM_FUZZ_CHECK(line.size() <= kernel.header.cmdline_size && line.size() < layout::kCmdlineMax,
                 "a %zu-byte cmdline accepted (kernel limit %u)", line.size(),
                 uint32_t{kernel.header.cmdline_size});
  std::string written(line.size() + 1, '?');
  VMM_FUZZ_CHECK(
      memory.read(layout::kCmdline, {reinterpret_cast<uint8_t*>(written.data()), written.size()}),
      "the cmdline is not in RAM");
  VMM_FUZZ_CHECK(written.back() == '\0' && written.compare(0, line.size(), line) == 0,
                 "the cmdline in guest memory differs or is not NUL-terminated");
}

void check_zero_page(const GuestMemory& memory, const BootLayout& boot) {
  const auto params = memory.read_obj<boot::BootParams>(layout::kZeroPage);
  VMM_FUZZ_CHECK(params.has_value(), "no zero page");
  const boot::BootInfo& info = boot.info;
  VMM_FUZZ_CHECK(params->e820_entries == info.e820.size(), "%u e820 entries in the zero page",
                 params->e820_entries);
  for (size_t i = 0; i < info.e820.size(); ++i) {
    const boot::BootE820Entry& e = params->e820_table[i];
    VMM_FUZZ_CHECK(
        e.addr == info.e820[i].addr && e.size == info.e820[i].size && e.type == info.e820[i].type,
        "zero page e820 entry %zu differs", i);
  }
  const uint64_t cmdline = params->hdr.cmd_line_ptr | uint64_t{params->ext_cmd_line_ptr} << 32;
  const uint64_t initrd = params->hdr.ramdisk_image | uint64_t{params->ext_ramdisk_image} << 32;
  const uint64_t initrd_size = params->hdr.ramdisk_size | uint64_t{params->ext_ramdisk_size} << 32;
  VMM_FUZZ_CHECK(cmdline == layout::kCmdline, "zero page cmdline at %#llx",
                 static_cast<unsigned long long>(cmdline));
  VMM_FUZZ_CHECK(
      initrd_size == info.initrd_size && (initrd_size == 0 || initrd == info.initrd_address),
      "zero page initrd %#llx (%#llx bytes)", static_cast<unsigned long long>(initrd),
      static_cast<unsigned long long>(initrd_size));
}

void check_start_info(const GuestMemory& memory, const BootLayout& boot) {
  const auto start = memory.read_obj<boot::HvmStartInfo>(layout::kPvhStartInfo);
  VMM_FUZZ_CHECK(start.has_value(), "no start info");
  const boot::BootInfo& info = boot.info;
  VMM_FUZZ_CHECK(start->magic == boot::kHvmStartMagic && start->version == 1, "bad start info");
  VMM_FUZZ_CHECK(start->cmdline_paddr == layout::kCmdline, "start info cmdline elsewhere");
  VMM_FUZZ_CHECK(start->memmap_entries == info.e820.size() &&
                     start->memmap_paddr >= layout::kPvhStartInfo + sizeof(boot::HvmStartInfo) &&
                     start->memmap_paddr + start->memmap_entries * sizeof(boot::HvmMemmapEntry) <=
                         layout::kZeroPage,
                 "start info memmap at %#llx, %u entries",
                 static_cast<unsigned long long>(start->memmap_paddr), start->memmap_entries);
  for (size_t i = 0; i < info.e820.size(); ++i) {
    const auto e = memory.read_obj<boot::HvmMemmapEntry>(start->memmap_paddr +
                                                         i * sizeof(boot::HvmMemmapEntry));
    VMM_FUZZ_CHECK(e && e->addr == info.e820[i].addr && e->size == info.e820[i].size &&
                       e->type == info.e820[i].type,
                   "start info memmap entry %zu differs", i);
  }
  VMM_FUZZ_CHECK(start->nr_modules == (info.initrd_size != 0 ? 1u : 0u), "%u modules",
                 start->nr_modules);
  if (start->nr_modules == 1) {
    const auto module = memory.read_obj<boot::HvmModlistEntry>(start->modlist_paddr);
    VMM_FUZZ_CHECK(
        module && module->paddr == info.initrd_address && module->size == info.initrd_size,
        "the module list names another initrd");
  }
}

void run(Reader& in) {
  const GuestMemory memory = GuestMemory::allocate(ram_size(in), GuestMemory::Backing::kAnonymous);
  const uint64_t initrd = initrd_size(in, memory.low_ram_end());
  const std::string line = cmdline(in);
  const uint8_t flags = in.u8();
  const boot::KernelLoadInput input{.kernel = {},
                                    .kernel_name = "--kernel fuzz",
                                    .initrd = {},
                                    .initrd_name = "--initrd fuzz",
                                    .cmdline = line,
                                    .rsdp_address = (flags & 2) != 0 ? layout::kAcpiStart : 0};
  try {
    const bool from_image = (flags & 1) == 0;
    const LoadedKernel kernel =
        from_image ? boot::load_kernel_image(memory, bzimage(in), input.kernel_name)
                   : kernel_extent(in, memory.ram_size());
    if (from_image) {
      VMM_FUZZ_CHECK(kernel.start >= layout::kHighMemStart && kernel.end <= memory.low_ram_end(),
                     "bzImage loaded at [%#llx, %#llx)",
                     static_cast<unsigned long long>(kernel.start),
                     static_cast<unsigned long long>(kernel.end));
    }
    const BootLayout boot = boot::write_boot_info(memory, kernel, input, initrd);
    boot::boot_cpu_state(memory, boot.entry);

    check_e820(memory, boot.info.e820);
    check_initrd(boot, kernel, initrd, line);
    check_cmdline(memory, kernel, line);
    if (boot.entry.mode == boot::BootEntry::Mode::kPvh32) {
      VMM_FUZZ_CHECK(boot.entry.boot_info == layout::kPvhStartInfo, "PVH boot info elsewhere");
      check_start_info(memory, boot);
    } else {
      VMM_FUZZ_CHECK(boot.entry.boot_info == layout::kZeroPage, "zero page elsewhere");
      check_zero_page(memory, boot);
    }
  } catch (const Error&) {
    // Too little RAM, an initrd or command line too large: refused, with a message.
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
