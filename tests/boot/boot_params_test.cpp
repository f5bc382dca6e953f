#include "boot/boot_params.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/memory/layout.hpp"
#include "base/util/size.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::error_of;
using test_images::value;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

void expect_sorted_and_disjoint(const std::vector<E820Entry>& map) {
  for (size_t i = 1; i < map.size(); ++i) {
    EXPECT_LE(map[i - 1].addr + map[i - 1].size, map[i].addr) << "entry " << i;
  }
}

bool any_ram_overlaps(const std::vector<E820Entry>& map, uint64_t start, uint64_t end) {
  for (const auto& e : map) {
    if (e.type == kE820Ram && e.addr < end && e.addr + e.size > start) return true;
  }
  return false;
}

TEST(E820Test, SmallGuest) {
  const GuestMemory memory = GuestMemory::allocate(512 * MiB);
  const auto map = build_e820_map(memory);
  EXPECT_THAT(map, ElementsAre(E820Entry{0, layout::kEbdaStart, kE820Ram},
                               E820Entry{layout::kEbdaStart, 0x400, kE820Reserved},
                               E820Entry{layout::kAcpiStart, 0x20000, kE820Reserved},
                               E820Entry{layout::kHighMemStart, 511 * MiB, kE820Ram}));
  expect_sorted_and_disjoint(map);
  EXPECT_FALSE(any_ram_overlaps(map, layout::kAcpiStart, layout::kAcpiEnd));
}

TEST(E820Test, GuestWithRamAbove4GiB) {
  const GuestMemory memory = GuestMemory::allocate(6 * GiB);
  const auto map = build_e820_map(memory);
  ASSERT_EQ(map.size(), 5u);
  EXPECT_EQ(map[3], (E820Entry{layout::kHighMemStart, layout::kMmioHoleStart - MiB, kE820Ram}));
  EXPECT_EQ(map[4], (E820Entry{layout::kHighRamStart, 6 * GiB - layout::kMmioHoleStart, kE820Ram}));
  expect_sorted_and_disjoint(map);
  EXPECT_FALSE(any_ram_overlaps(map, layout::kMmioHoleStart, layout::kMmioHoleEnd));
  EXPECT_FALSE(any_ram_overlaps(map, layout::kAcpiStart, layout::kAcpiEnd));
}

TEST(E820Test, RegionsCrossingTheHolesAreSplit) {
  // One region from 0 straight through the MMIO hole. The map only reads the region list, so the
  // host buffer behind it is never touched.
  std::vector<uint8_t> unused(1);
  const GuestMemory memory =
      GuestMemory::from_regions({{0, layout::kMmioHoleEnd + MiB, unused.data()}});
  const auto map = build_e820_map(memory);
  EXPECT_FALSE(any_ram_overlaps(map, layout::kEbdaStart, layout::kHighMemStart));
  EXPECT_FALSE(any_ram_overlaps(map, layout::kMmioHoleStart, layout::kMmioHoleEnd));
  EXPECT_EQ(map.back(), (E820Entry{layout::kMmioHoleEnd, MiB, kE820Ram}));
}

constexpr uint64_t kKernelStart = 16 * MiB;
constexpr uint64_t kKernelEnd = 48 * MiB;

TEST(InitrdTest, GoesAsHighAsAllowed) {
  // Ends at the top of low RAM, page aligned.
  EXPECT_EQ(place_initrd(10 * MiB + 1, 0x7fffffff, 512 * MiB, kKernelStart, kKernelEnd, "x"),
            512 * MiB - 10 * MiB - 4096);
  // initrd_addr_max is the last byte the initrd may occupy.
  EXPECT_EQ(place_initrd(MiB, 0x0fffffff, 512 * MiB, kKernelStart, kKernelEnd, "x"), 255 * MiB);
  // 0 means the historical 0x37ffffff.
  EXPECT_EQ(place_initrd(MiB, 0, 2 * GiB, kKernelStart, kKernelEnd, "x"), 0x38000000 - MiB);
}

TEST(InitrdTest, AvoidsTheKernel) {
  // Below 56 MiB, 16 MiB would overlap the kernel's [16, 48) MiB; it goes under the kernel.
  EXPECT_EQ(place_initrd(14 * MiB, 0x7fffffff, 56 * MiB, kKernelStart, kKernelEnd, "x"), 2 * MiB);
}

TEST(InitrdTest, ReportsWhenItDoesNotFit) {
  EXPECT_EQ(error_of([] {
              place_initrd(20 * MiB, 0x7fffffff, 56 * MiB, kKernelStart, kKernelEnd,
                           "--initrd /i.cpio");
            }),
            "--initrd /i.cpio: 20 MiB does not fit in guest memory below 56 MiB (try a larger "
            "--memory)");
  EXPECT_THAT(error_of([] {
                place_initrd(600 * MiB, 0x7fffffff, 512 * MiB, kKernelStart, kKernelEnd, "x");
              }),
              HasSubstr("600 MiB does not fit in guest memory below 512 MiB"));
}

TEST(CmdlineTest, WritesNulTerminated) {
  const GuestMemory memory = GuestMemory::allocate(16 * MiB);
  write_cmdline(memory, "console=ttyS0 quiet", 2047);
  const auto bytes = memory.slice(layout::kCmdline, 20);
  ASSERT_TRUE(bytes);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(bytes->data())), "console=ttyS0 quiet");
}

TEST(CmdlineTest, RejectsTooLong) {
  const GuestMemory memory = GuestMemory::allocate(16 * MiB);
  EXPECT_EQ(error_of([&] { write_cmdline(memory, std::string(300, 'a'), 255); }),
            "--cmdline is 300 bytes, this kernel accepts at most 255");
  EXPECT_THAT(error_of([&] { write_cmdline(memory, std::string(70000, 'a'), 1 << 20); }),
              HasSubstr("accepts at most 65535"));
}

BootInfo sample_info() {
  BootInfo info;
  info.cmdline_address = layout::kCmdline;
  info.initrd_address = 0x1f000000;
  info.initrd_size = 0x123456;
  info.rsdp_address = layout::kAcpiStart;
  info.e820 = {{0, layout::kEbdaStart, kE820Ram}, {layout::kHighMemStart, 511 * MiB, kE820Ram}};
  return info;
}

TEST(ZeroPageTest, FillsLoaderFields) {
  SetupHeader header{};
  header.header = kHdrSMagic;
  header.version = 0x020f;
  header.loadflags = 0x20;  // QUIET_FLAG survives
  header.init_size = 0x1234000;
  const BootParams params = build_zero_page(header, sample_info());

  EXPECT_EQ(value(params.hdr.header), kHdrSMagic);
  EXPECT_EQ(value(params.hdr.init_size), 0x1234000u);
  EXPECT_EQ(value(params.hdr.type_of_loader), 0xff);
  EXPECT_EQ(value(params.hdr.loadflags), 0x20 | kLoadedHigh | kCanUseHeap);
  EXPECT_NE(value(params.hdr.heap_end_ptr), 0);
  EXPECT_EQ(value(params.hdr.cmd_line_ptr), layout::kCmdline);
  EXPECT_EQ(value(params.ext_cmd_line_ptr), 0u);
  EXPECT_EQ(value(params.hdr.ramdisk_image), 0x1f000000u);
  EXPECT_EQ(value(params.hdr.ramdisk_size), 0x123456u);
  EXPECT_EQ(value(params.ext_ramdisk_image), 0u);
  EXPECT_EQ(value(params.acpi_rsdp_addr), layout::kAcpiStart);
  ASSERT_EQ(params.e820_entries, 2);
  EXPECT_EQ(value(params.e820_table[1].addr), layout::kHighMemStart);
  EXPECT_EQ(value(params.e820_table[1].size), 511 * MiB);
  EXPECT_EQ(value(params.e820_table[1].type), kE820Ram);
  EXPECT_EQ(value(params.sentinel), 0);
}

TEST(ZeroPageTest, SplitsAddressesAbove4GiB) {
  BootInfo info = sample_info();
  info.initrd_address = 0x123456000;
  info.initrd_size = uint64_t{5} << 32;
  const BootParams params = build_zero_page(SetupHeader{}, info);
  EXPECT_EQ(value(params.hdr.ramdisk_image), 0x23456000u);
  EXPECT_EQ(value(params.ext_ramdisk_image), 1u);
  EXPECT_EQ(value(params.hdr.ramdisk_size), 0u);
  EXPECT_EQ(value(params.ext_ramdisk_size), 5u);
}

TEST(PvhStartInfoTest, WritesStartInfoModulesAndMemoryMap) {
  const GuestMemory memory = GuestMemory::allocate(512 * MiB);
  const BootInfo info = sample_info();
  write_pvh_start_info(memory, info);

  const auto start = memory.read_obj<HvmStartInfo>(layout::kPvhStartInfo);
  ASSERT_TRUE(start);
  EXPECT_EQ(start->magic, kHvmStartMagic);
  EXPECT_EQ(start->version, 1u);
  EXPECT_EQ(start->cmdline_paddr, layout::kCmdline);
  EXPECT_EQ(start->rsdp_paddr, layout::kAcpiStart);
  ASSERT_EQ(start->nr_modules, 1u);
  const auto module = memory.read_obj<HvmModlistEntry>(start->modlist_paddr);
  ASSERT_TRUE(module);
  EXPECT_EQ(module->paddr, 0x1f000000u);
  EXPECT_EQ(module->size, 0x123456u);
  ASSERT_EQ(start->memmap_entries, 2u);
  const auto second = memory.read_obj<HvmMemmapEntry>(start->memmap_paddr + 24);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->addr, layout::kHighMemStart);
  EXPECT_EQ(second->size, 511 * MiB);
  EXPECT_EQ(second->type, kE820Ram);
}

TEST(PvhStartInfoTest, NoInitrdMeansNoModules) {
  const GuestMemory memory = GuestMemory::allocate(512 * MiB);
  BootInfo info = sample_info();
  info.initrd_size = 0;
  write_pvh_start_info(memory, info);
  const auto start = memory.read_obj<HvmStartInfo>(layout::kPvhStartInfo);
  ASSERT_TRUE(start);
  EXPECT_EQ(start->nr_modules, 0u);
  EXPECT_EQ(start->modlist_paddr, 0u);
}

}  // namespace
}  // namespace vmm::boot
