#include "boot/boot_params.hpp"

#include <algorithm>
#include <cstring>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {

namespace {

// boot.rst: a kernel that leaves initrd_addr_max at 0 accepts an initrd up to this address.
constexpr uint64_t kDefaultInitrdAddrMax = 0x37ffffff;
constexpr uint64_t kPageSize = 4096;
// The real-mode heap end the protocol's examples use; unused on the 64-bit entry path, but
// CAN_USE_HEAP promises a sane value.
constexpr uint16_t kHeapEndPtr = 0xfe00;

struct Range {
  uint64_t start;
  uint64_t end;
};

// Appends the parts of `r` outside `hole` to `out`.
void subtract(Range r, Range hole, std::vector<Range>& out) {
  if (r.end <= hole.start || r.start >= hole.end) {
    out.push_back(r);
    return;
  }
  if (r.start < hole.start) out.push_back({r.start, hole.start});
  if (r.end > hole.end) out.push_back({hole.end, r.end});
}

template <typename T>
std::span<const uint8_t> bytes_of(const T* objects, size_t count = 1) {
  return {reinterpret_cast<const uint8_t*>(objects), count * sizeof(T)};
}

uint64_t mib_rounded_up(uint64_t bytes) {
  return (bytes + MiB - 1) / MiB;
}

}  // namespace

std::vector<E820Entry> build_e820_map(const GuestMemory& memory) {
  std::vector<Range> ram;
  for (const auto& region : memory.regions()) {
    ram.push_back({region.guest_base, region.guest_base + region.size});
  }
  for (Range hole : {Range{layout::kEbdaStart, layout::kHighMemStart},
                     Range{layout::kMmioHoleStart, layout::kMmioHoleEnd}}) {
    std::vector<Range> rest;
    for (Range r : ram) subtract(r, hole, rest);
    ram = std::move(rest);
  }

  std::vector<E820Entry> map;
  map.reserve(ram.size() + 2);
  for (Range r : ram) map.push_back({r.start, r.end - r.start, kE820Ram});
  // Nothing at 0x40e points at an EBDA, but the kernel still expects it reserved; the ACPI tables
  // must never be handed out as RAM.
  map.push_back({layout::kEbdaStart, layout::kLowRamEnd - layout::kEbdaStart, kE820Reserved});
  map.push_back({layout::kAcpiStart, layout::kBiosAreaEnd - layout::kAcpiStart, kE820Reserved});
  std::sort(map.begin(), map.end(),
            [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
  for (size_t i = 1; i < map.size(); ++i) {
    if (map[i - 1].addr + map[i - 1].size > map[i].addr) {
      fail("internal error: e820 entries at {:#x} and {:#x} overlap", map[i - 1].addr, map[i].addr);
    }
  }
  return map;
}

uint64_t place_initrd(uint64_t size, uint32_t initrd_addr_max, uint64_t low_ram_end,
                      uint64_t kernel_start, uint64_t kernel_end, const std::string& name) {
  const uint64_t addr_max = initrd_addr_max == 0 ? kDefaultInitrdAddrMax : initrd_addr_max;
  // One past the last byte the initrd may occupy.
  const uint64_t top = std::min(addr_max + 1, low_ram_end);
  const auto fail_no_room = [&]() {
    fail("{}: {} MiB does not fit in guest memory below {} MiB (try a larger --memory)", name,
         mib_rounded_up(size), top / MiB);
  };
  if (size > top) fail_no_room();
  uint64_t addr = align_down(top - size, kPageSize);
  if (addr < kernel_end && addr + size > kernel_start) {
    if (size > kernel_start) fail_no_room();
    addr = align_down(kernel_start - size, kPageSize);
  }
  // Low memory holds the zero page, page tables and command line.
  if (addr < layout::kHighMemStart) fail_no_room();
  return addr;
}

void write_cmdline(const GuestMemory& memory, const std::string& cmdline, uint64_t kernel_max) {
  const uint64_t limit = std::min(kernel_max, layout::kCmdlineMax - 1);
  if (cmdline.size() > limit) {
    fail("--cmdline is {} bytes, this kernel accepts at most {}", cmdline.size(), limit);
  }
  // c_str() includes the terminating NUL.
  memory.write_or_throw(
      layout::kCmdline,
      std::span(reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1),
      "the kernel command line");
}

BootParams build_zero_page(const SetupHeader& image_header, const BootInfo& info) {
  BootParams params{};
  params.hdr = image_header;
  SetupHeader& hdr = params.hdr;
  hdr.type_of_loader = kUndefinedLoader;
  hdr.loadflags |= kLoadedHigh | kCanUseHeap;
  hdr.heap_end_ptr = kHeapEndPtr;
  hdr.cmd_line_ptr = static_cast<uint32_t>(info.cmdline_address);
  params.ext_cmd_line_ptr = static_cast<uint32_t>(info.cmdline_address >> 32);
  if (info.initrd_size != 0) {
    hdr.ramdisk_image = static_cast<uint32_t>(info.initrd_address);
    hdr.ramdisk_size = static_cast<uint32_t>(info.initrd_size);
    params.ext_ramdisk_image = static_cast<uint32_t>(info.initrd_address >> 32);
    params.ext_ramdisk_size = static_cast<uint32_t>(info.initrd_size >> 32);
  }
  params.acpi_rsdp_addr = info.rsdp_address;
  if (info.e820.size() > kE820MaxEntriesZeroPage) {
    fail("internal error: {} e820 entries do not fit in the zero page", info.e820.size());
  }
  params.e820_entries = static_cast<uint8_t>(info.e820.size());
  for (size_t i = 0; i < info.e820.size(); ++i) {
    params.e820_table[i] = {info.e820[i].addr, info.e820[i].size, info.e820[i].type};
  }
  return params;
}

void write_pvh_start_info(const GuestMemory& memory, const BootInfo& info) {
  const uint64_t modlist = layout::kPvhStartInfo + kPvhModlistOffset;
  const uint64_t memmap = layout::kPvhStartInfo + kPvhMemmapOffset;
  const uint64_t memmap_capacity = (layout::kZeroPage - memmap) / sizeof(HvmMemmapEntry);
  if (info.e820.size() > memmap_capacity) {
    fail("internal error: {} memory map entries do not fit in the PVH start info",
         info.e820.size());
  }

  HvmStartInfo start{};
  start.magic = kHvmStartMagic;
  start.version = 1;
  start.cmdline_paddr = info.cmdline_address;
  start.rsdp_paddr = info.rsdp_address;
  start.memmap_paddr = memmap;
  start.memmap_entries = static_cast<uint32_t>(info.e820.size());
  if (info.initrd_size != 0) {
    start.nr_modules = 1;
    start.modlist_paddr = modlist;
    const HvmModlistEntry module{info.initrd_address, info.initrd_size, 0, 0};
    memory.write_or_throw(modlist, bytes_of(&module), "the PVH module list");
  }
  std::vector<HvmMemmapEntry> entries;
  for (const auto& e : info.e820) entries.push_back({e.addr, e.size, e.type, 0});
  memory.write_or_throw(memmap, bytes_of(entries.data(), entries.size()), "the PVH memory map");
  memory.write_or_throw(layout::kPvhStartInfo, bytes_of(&start), "the PVH start info");
}

}  // namespace vmm::boot
