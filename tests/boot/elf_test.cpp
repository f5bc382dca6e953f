#include "boot/elf.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/util/size.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::error_of;
using test_images::make_elf;
using test_images::phdr_at;
using ::testing::HasSubstr;

const std::string kName = "--kernel /vmlinux";
constexpr uint64_t kKernelVirt = 0xffffffff81000000;
constexpr uint64_t kKernelPhys = 0x1000000;

std::vector<uint8_t> pattern(size_t size) {
  std::vector<uint8_t> data(size);
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i + 1);
  return data;
}

// Text at 16 MiB and a data segment with bss right after, linked high like Linux.
std::vector<uint8_t> linux_like_elf(uint64_t entry, std::optional<uint64_t> pvh = std::nullopt) {
  return make_elf({{kKernelVirt, kKernelPhys, pattern(0x3000), 0x3000},
                   {kKernelVirt + 0x4000, kKernelPhys + 0x4000, pattern(0x100), 0x2000}},
                  entry, pvh);
}

TEST(ElfTest, ParsesVmlinuxWithPhysicalEntry) {
  const auto bytes = linux_like_elf(kKernelPhys + 0x40);
  const ElfKernel kernel = parse_elf(bytes, kName);
  ASSERT_EQ(kernel.segments.size(), 2u);
  EXPECT_EQ(kernel.entry64, kKernelPhys + 0x40);
  EXPECT_FALSE(kernel.pvh_entry.has_value());
  EXPECT_EQ(kernel.start, kKernelPhys);
  EXPECT_EQ(kernel.end, kKernelPhys + 0x6000);
  EXPECT_TRUE(looks_like_elf(bytes));
}

TEST(ElfTest, ConvertsVirtualEntryToPhysical) {
  const auto bytes = linux_like_elf(kKernelVirt + 0x4010);
  EXPECT_EQ(parse_elf(bytes, kName).entry64, kKernelPhys + 0x4010);
}

TEST(ElfTest, FindsThePvhNote) {
  const auto bytes = linux_like_elf(kKernelPhys, kKernelPhys + 0x80);
  const ElfKernel kernel = parse_elf(bytes, kName);
  ASSERT_TRUE(kernel.pvh_entry.has_value());
  EXPECT_EQ(*kernel.pvh_entry, kKernelPhys + 0x80);
}

TEST(ElfTest, RejectsPvhEntryAbove4GiB) {
  const auto bytes = linux_like_elf(kKernelPhys, uint64_t{1} << 32);
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("above 4 GiB"));
}

TEST(ElfTest, LoadsSegmentsAndZeroesBss) {
  const auto bytes = linux_like_elf(kKernelPhys);
  const ElfKernel kernel = parse_elf(bytes, kName);
  const GuestMemory memory = GuestMemory::allocate(64 * MiB);
  // Stale bytes where the bss goes must be cleared.
  std::vector<uint8_t> junk(0x2000, 0xcc);
  ASSERT_TRUE(memory.write(kKernelPhys + 0x4000, junk));
  load_elf(memory, kernel, kName);

  const auto text = memory.slice(kKernelPhys, 0x3000);
  ASSERT_TRUE(text);
  EXPECT_EQ(std::vector<uint8_t>(text->begin(), text->end()), pattern(0x3000));
  const auto data = memory.slice(kKernelPhys + 0x4000, 0x2000);
  ASSERT_TRUE(data);
  EXPECT_EQ(std::vector<uint8_t>(data->begin(), data->begin() + 0x100), pattern(0x100));
  EXPECT_EQ(std::count(data->begin() + 0x100, data->end(), 0), 0x2000 - 0x100);
}

TEST(ElfTest, RejectsSegmentsOutsideRamOrBelowOneMiB) {
  const GuestMemory memory = GuestMemory::allocate(8 * MiB);
  const auto high = linux_like_elf(kKernelPhys);
  EXPECT_THAT(error_of([&] { load_elf(memory, parse_elf(high, kName), kName); }),
              HasSubstr("outside guest RAM"));
  const auto low = make_elf({{0x8000, 0x8000, pattern(16), 16}}, 0x8000);
  EXPECT_THAT(error_of([&] { load_elf(memory, parse_elf(low, kName), kName); }),
              HasSubstr("--kernel /vmlinux: ELF segment at 0x8000"));
}

TEST(ElfTest, RejectsBadHeaders) {
  auto bytes = linux_like_elf(kKernelPhys);
  bytes[EI_CLASS] = ELFCLASS32;
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("not a 64-bit ELF"));

  bytes = linux_like_elf(kKernelPhys);
  reinterpret_cast<Elf64_Ehdr*>(bytes.data())->e_machine = EM_AARCH64;
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("is not x86-64"));

  bytes = linux_like_elf(kKernelPhys);
  reinterpret_cast<Elf64_Ehdr*>(bytes.data())->e_phnum = 0;
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("0 ELF program headers"));

  bytes = linux_like_elf(kKernelPhys);
  reinterpret_cast<Elf64_Ehdr*>(bytes.data())->e_phoff = bytes.size() - 8;
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }),
              HasSubstr("program headers lie outside the file"));

  bytes = linux_like_elf(0x5000000);
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }),
              HasSubstr("entry point 0x5000000 is not in any loadable segment"));

  bytes.resize(40);
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("truncated ELF header"));
}

TEST(ElfTest, RejectsMalformedSegmentOffsets) {
  auto bytes = linux_like_elf(kKernelPhys);
  phdr_at(bytes, 1)->p_offset = bytes.size() - 0x10;  // 0x100 bytes from 0x10 before the end
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("ELF segment 1 (offset"));

  bytes = linux_like_elf(kKernelPhys);
  phdr_at(bytes, 0)->p_offset = ~uint64_t{0} - 0x10;  // offset + filesz wraps
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("lies outside the file"));
}

TEST(ElfTest, RejectsOverflowingSizes) {
  auto bytes = linux_like_elf(kKernelPhys);
  phdr_at(bytes, 1)->p_memsz = 0x10;  // smaller than filesz
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("smaller in memory"));

  bytes = linux_like_elf(kKernelPhys);
  phdr_at(bytes, 1)->p_memsz = ~uint64_t{0} - 0x100;  // paddr + memsz wraps
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("wraps around"));

  bytes = linux_like_elf(kKernelPhys);
  phdr_at(bytes, 0)->p_filesz = ~uint64_t{0};
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("lies outside the file"));
}

TEST(ElfTest, RejectsMalformedNote) {
  auto bytes = linux_like_elf(kKernelPhys, kKernelPhys);
  // The note's descsz, inside the PT_NOTE segment that follows the program headers.
  const uint64_t note_offset = phdr_at(bytes, 2)->p_offset;
  auto* nhdr = reinterpret_cast<Elf64_Nhdr*>(bytes.data() + note_offset);
  nhdr->n_descsz = 0xfffffff0;
  EXPECT_THAT(error_of([&] { parse_elf(bytes, kName); }), HasSubstr("malformed ELF note"));
}

}  // namespace
}  // namespace vmm::boot
