#include "boot/bzimage.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::edit_header;
using test_images::error_of;
using test_images::make_bzimage;
using test_images::value;
using ::testing::HasSubstr;

const std::string kName = "--kernel /x";

TEST(BzImageTest, ParsesAValidImage) {
  const auto bytes = make_bzimage(8192);
  const BzImage image = parse_bzimage(bytes, kName);
  EXPECT_EQ(value(image.header.version), 0x020f);
  EXPECT_EQ(image.payload.size(), 8192u);
  EXPECT_EQ(image.payload.data(), bytes.data() + test_images::kTestSetupSize);
  EXPECT_EQ(image.memory_span(), 32 * MiB);  // init_size dominates the payload
  EXPECT_TRUE(looks_like_bzimage(bytes));
}

TEST(BzImageTest, SetupSectsZeroMeansFour) {
  auto bytes = make_bzimage(100);
  edit_header(bytes, [](SetupHeader& h) { h.setup_sects = 0; });
  EXPECT_EQ(parse_bzimage(bytes, kName).payload.size(), 100u);
}

TEST(BzImageTest, DropsSetupCodeBeyondTheHeaderEnd) {
  auto bytes = make_bzimage();
  // A 2.12-era jump that lands right after handover_offset: kernel_info_offset is setup code.
  edit_header(bytes, [](SetupHeader& h) {
    h.jump = 0x66eb;
    h.kernel_info_offset = 0xdeadbeef;
  });
  const BzImage image = parse_bzimage(bytes, kName);
  EXPECT_EQ(value(image.header.kernel_info_offset), 0u);
  EXPECT_EQ(value(image.header.init_size), 32 * MiB);
}

TEST(BzImageTest, RejectsTinyFile) {
  std::vector<uint8_t> bytes(600);
  EXPECT_THAT(error_of([&] { parse_bzimage(bytes, kName); }),
              HasSubstr("--kernel /x: truncated (600 bytes"));
}

TEST(BzImageTest, RejectsTruncatedSetup) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.setup_sects = 63; });
  EXPECT_EQ(
      error_of([&] { parse_bzimage(bytes, kName); }),
      fmt::format("--kernel /x: truncated (setup claims 32768 bytes, file has {})", bytes.size()));
}

TEST(BzImageTest, RejectsTruncatedPayload) {
  auto bytes = make_bzimage(8192);
  bytes.resize(bytes.size() - 100);  // syssize still claims the whole 8192 bytes
  EXPECT_EQ(error_of([&] { parse_bzimage(bytes, kName); }),
            "--kernel /x: truncated (the header claims 8192 bytes of kernel after the setup, file "
            "has 8092)");
}

TEST(BzImageTest, RejectsMissingMagic) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.header = 0x12345678; });
  EXPECT_EQ(error_of([&] { parse_bzimage(bytes, kName); }),
            "--kernel /x: not a Linux kernel image (no \"HdrS\" magic)");
  EXPECT_FALSE(looks_like_bzimage(bytes));
}

TEST(BzImageTest, RejectsBadBootFlag) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.boot_flag = 0x1234; });
  EXPECT_THAT(error_of([&] { parse_bzimage(bytes, kName); }),
              HasSubstr("--kernel /x: not a Linux kernel image (boot flag is 0x1234"));
}

TEST(BzImageTest, RejectsOldProtocol) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.version = 0x020a; });
  EXPECT_EQ(error_of([&] { parse_bzimage(bytes, kName); }),
            "--kernel /x: boot protocol 2.10 is too old (need 2.12 or later)");
}

TEST(BzImageTest, RejectsKernelWithout64BitEntry) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.xloadflags = 0; });
  EXPECT_THAT(error_of([&] { parse_bzimage(bytes, kName); }), HasSubstr("XLF_KERNEL_64"));
}

TEST(BzImageTest, RejectsBadAlignment) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.kernel_alignment = 0x300000; });
  EXPECT_THAT(error_of([&] { parse_bzimage(bytes, kName); }),
              HasSubstr("kernel_alignment 0x300000 is not a power of two"));

  bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.pref_address = 0x1100000; });
  EXPECT_THAT(error_of([&] { parse_bzimage(bytes, kName); }),
              HasSubstr("pref_address 0x1100000 is not aligned"));
}

TEST(BzImageTest, RejectsZeroInitSize) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.init_size = 0; });
  EXPECT_EQ(error_of([&] { parse_bzimage(bytes, kName); }), "--kernel /x: init_size is zero");
}

TEST(BzImageLoadAddressTest, RelocatableKernelUsesPrefAddressWhenItFits) {
  const auto bytes = make_bzimage();
  const BzImage image = parse_bzimage(bytes, kName);
  EXPECT_EQ(bzimage_load_address(image, 64 * MiB, kName), 16 * MiB);
  EXPECT_EQ(bzimage_load_address(image, 48 * MiB, kName), 16 * MiB);  // exactly fits
}

TEST(BzImageLoadAddressTest, RelocatableKernelMovesDownWhenPrefAddressDoesNotFit) {
  const auto bytes = make_bzimage();
  const BzImage image = parse_bzimage(bytes, kName);
  // [16 MiB, 48 MiB) does not fit in 40 MiB; the lowest 2 MiB-aligned address from 1 MiB does.
  EXPECT_EQ(bzimage_load_address(image, 40 * MiB, kName), 2 * MiB);
  EXPECT_EQ(error_of([&] { bzimage_load_address(image, 32 * MiB, kName); }),
            "--kernel /x: not enough guest memory for the kernel (needs 34 MiB)");
}

TEST(BzImageLoadAddressTest, NonRelocatableKernelLoadsAtOneMiB) {
  auto bytes = make_bzimage();
  edit_header(bytes, [](SetupHeader& h) { h.relocatable_kernel = 0; });
  const BzImage image = parse_bzimage(bytes, kName);
  EXPECT_EQ(bzimage_load_address(image, 64 * MiB, kName), layout::kHighMemStart);
  EXPECT_EQ(error_of([&] { bzimage_load_address(image, 16 * MiB, kName); }),
            "--kernel /x: not enough guest memory for the kernel (needs 33 MiB)");
}

}  // namespace
}  // namespace vmm::boot
