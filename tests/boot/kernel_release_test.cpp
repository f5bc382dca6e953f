#include "boot/kernel_release.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "base/util/file.hpp"
#include "tests/boot/lab_kernels.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::edit_header;
using test_images::make_bzimage;
using test_images::make_elf;

constexpr std::string_view kVersionString =
    "6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3";
// Where the synthetic images keep their version string: inside the setup sectors, as the kernel's.
constexpr size_t kVersionAt = 0x400;

// A bzImage whose kernel_version points at `text` (written with its NUL, unless it would not fit).
std::vector<uint8_t> bzimage_with_version(std::string_view text, size_t at = kVersionAt) {
  auto image = make_bzimage();
  image.resize(std::max(image.size(), at + text.size()));
  std::memcpy(image.data() + at, text.data(), text.size());
  edit_header(image, [&](SetupHeader& h) { h.kernel_version = static_cast<uint16_t>(at - 0x200); });
  return image;
}

std::vector<uint8_t> elf_with_data(std::string_view text) {
  return make_elf({{0xffffffff81000000, 0x1000000, {text.begin(), text.end()}, text.size()}},
                  0xffffffff81000000);
}

TEST(KernelReleaseTest, BzImageReleaseIsTheVersionStringsFirstWord) {
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string(kVersionString) + '\0')),
            "6.1.0-57-cloud-amd64");
}

TEST(KernelReleaseTest, BzImageReleaseMayBeTheWholeString) {
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string_view("5.10.0\0", 7))), "5.10.0");
}

TEST(KernelReleaseTest, BzImageWithoutVersionHasNone) {
  auto image = make_bzimage();  // kernel_version 0, as vmm's test guests have it
  EXPECT_EQ(kernel_release(image), std::nullopt);
  image = bzimage_with_version(std::string(kVersionString) + '\0');
  edit_header(image, [](SetupHeader& h) { h.version = 0x0105; });  // before kernel_version existed
  EXPECT_EQ(kernel_release(image), std::nullopt);
}

TEST(KernelReleaseTest, HostileBzImagesHaveNone) {
  auto image = bzimage_with_version(std::string(kVersionString) + '\0');
  // The pointer past the end of the file.
  edit_header(image, [](SetupHeader& h) { h.kernel_version = 0xffff; });
  EXPECT_EQ(kernel_release(image), std::nullopt);
  // The string runs into the end of the file without a NUL (or even a space).
  auto unterminated = bzimage_with_version("6.1.0-57");
  unterminated.resize(kVersionAt + 8);
  EXPECT_EQ(kernel_release(unterminated), std::nullopt);
  // Words that are no release: they would lead a module path out of /lib/modules.
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string_view("../../etc \0", 11))),
            std::nullopt);
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string_view("6.1/../../x \0", 13))),
            std::nullopt);
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string_view("6.1\x01x \0", 7))), std::nullopt);
  EXPECT_EQ(kernel_release(bzimage_with_version(std::string(200, '6') + '\0')), std::nullopt);
  // Cut short inside the setup header.
  image.resize(0x210);
  EXPECT_EQ(kernel_release(image), std::nullopt);
}

TEST(KernelReleaseTest, ElfReleaseComesFromTheBanner) {
  // A format string with the same words comes first: it is not the banner.
  EXPECT_EQ(
      kernel_release(elf_with_data(std::string("\0Linux version %s\0junk\0Linux version ", 37) +
                                   std::string(kVersionString) + '\0')),
      "6.1.0-57-cloud-amd64");
}

TEST(KernelReleaseTest, ElfWithoutBannerHasNone) {
  EXPECT_EQ(kernel_release(elf_with_data("no banner here")), std::nullopt);
  // The banner's release runs into the end of the file.
  EXPECT_EQ(kernel_release(elf_with_data("Linux version 6.1.0")), std::nullopt);
}

TEST(KernelReleaseTest, NeitherBzImageNorElfHasNone) {
  EXPECT_EQ(kernel_release({}), std::nullopt);
  const std::string text = "Linux version 6.1.0-57-amd64 (not a kernel image)";
  EXPECT_EQ(kernel_release({reinterpret_cast<const uint8_t*>(text.data()), text.size()}),
            std::nullopt);
}

using RealKernelReleaseTest = testing::LabKernelTest;

TEST_F(RealKernelReleaseTest, DebianBzImagesGiveTheirPackagesRelease) {
  for (const std::string flavour : {"cloud", "generic"}) {
    EXPECT_EQ(kernel_release(read_file(file(flavour, "vmlinuz"), "")), release(flavour)) << flavour;
  }
}

TEST_F(RealKernelReleaseTest, DebianVmlinuxGivesTheSameRelease) {
  const std::string vmlinux = file("cloud", "vmlinux");
  if (!std::filesystem::exists(vmlinux)) {
    GTEST_SKIP() << vmlinux << " is not there (guest-tests/linux/extract-vmlinux.sh makes it)";
  }
  EXPECT_EQ(kernel_release(read_file(vmlinux, "")), release("cloud"));
}

}  // namespace
}  // namespace vmm::boot
