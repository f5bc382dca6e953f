#include "boot/kernel_loader.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "base/memory/layout.hpp"
#include "base/util/size.hpp"
#include "boot/boot_params.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::error_of;
using test_images::make_bzimage;
using test_images::make_elf;
using test_images::value;
using ::testing::HasSubstr;

class KernelLoaderTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path =
        ::testing::TempDir() + "/boot_loader_" + std::to_string(::getpid()) + "_" + name;
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    paths_.push_back(path);
    return path;
  }
  void TearDown() override {
    for (const auto& p : paths_) ::unlink(p.c_str());
  }

  std::vector<uint8_t> bytes_at(uint64_t gpa, uint64_t size) {
    const auto s = memory_.slice(gpa, size);
    EXPECT_TRUE(s);
    return s ? std::vector<uint8_t>(s->begin(), s->end()) : std::vector<uint8_t>{};
  }

  GuestMemory memory_ = GuestMemory::allocate(64 * MiB);
  std::vector<std::string> paths_;
};

TEST_F(KernelLoaderTest, LoadsBzImageWithInitrdAndCmdline) {
  const auto kernel = make_bzimage(8192);
  const std::vector<uint8_t> initrd(3 * MiB + 5, 0x5a);
  KernelLoadConfig config{write("bzImage", kernel), write("initrd", initrd), "console=ttyS0",
                          layout::kAcpiStart};
  const BootEntry entry = load_kernel(memory_, config);

  EXPECT_EQ(entry.mode, BootEntry::Mode::kLinux64);
  EXPECT_EQ(entry.entry, 16 * MiB + 0x200);
  EXPECT_EQ(entry.boot_info, layout::kZeroPage);
  EXPECT_EQ(bytes_at(16 * MiB, 8192),
            std::vector<uint8_t>(kernel.begin() + test_images::kTestSetupSize, kernel.end()));

  const auto params = memory_.read_obj<BootParams>(layout::kZeroPage);
  ASSERT_TRUE(params);
  EXPECT_EQ(value(params->hdr.header), kHdrSMagic);
  EXPECT_EQ(value(params->hdr.type_of_loader), 0xff);
  EXPECT_EQ(value(params->hdr.cmd_line_ptr), layout::kCmdline);
  EXPECT_EQ(value(params->acpi_rsdp_addr), layout::kAcpiStart);
  EXPECT_EQ(value(params->e820_entries), 4);
  // Highest page-aligned spot below 64 MiB, above the kernel's [16, 48) MiB.
  const uint64_t initrd_at = 64 * MiB - 3 * MiB - 4096;
  EXPECT_EQ(value(params->hdr.ramdisk_image), initrd_at);
  EXPECT_EQ(value(params->hdr.ramdisk_size), initrd.size());
  EXPECT_EQ(bytes_at(initrd_at, initrd.size()), initrd);
  const auto cmdline = bytes_at(layout::kCmdline, 14);
  EXPECT_EQ(std::string(cmdline.begin(), cmdline.end()), std::string("console=ttyS0\0", 14));

  const BootCpuState cpu = boot_cpu_state(memory_, entry);
  EXPECT_EQ(cpu.regs.rip, entry.entry);
  EXPECT_EQ(cpu.regs.rsi, layout::kZeroPage);
  EXPECT_EQ(cpu.sregs.efer, 0x500u);
}

TEST_F(KernelLoaderTest, LoadsVmlinuxWithPvhNote) {
  const std::vector<uint8_t> text(0x1000, 0x90);
  const auto kernel =
      make_elf({{0xffffffff81000000, 16 * MiB, text, 0x2000}}, 16 * MiB, 16 * MiB + 0x100);
  const std::vector<uint8_t> initrd(4096, 1);
  const BootEntry entry =
      load_kernel(memory_, {write("vmlinux", kernel), write("initrd", initrd), "quiet", 0});
  EXPECT_EQ(entry.mode, BootEntry::Mode::kPvh32);
  EXPECT_EQ(entry.entry, 16 * MiB + 0x100);
  EXPECT_EQ(entry.boot_info, layout::kPvhStartInfo);
  EXPECT_EQ(bytes_at(16 * MiB, 0x1000), text);

  const auto start = memory_.read_obj<HvmStartInfo>(layout::kPvhStartInfo);
  ASSERT_TRUE(start);
  EXPECT_EQ(start->magic, kHvmStartMagic);
  EXPECT_EQ(start->cmdline_paddr, layout::kCmdline);
  EXPECT_EQ(start->nr_modules, 1u);
  const auto module = memory_.read_obj<HvmModlistEntry>(start->modlist_paddr);
  ASSERT_TRUE(module);
  EXPECT_EQ(module->paddr, 64 * MiB - 4096);
  EXPECT_EQ(module->size, 4096u);

  const BootCpuState cpu = boot_cpu_state(memory_, entry);
  EXPECT_EQ(cpu.regs.rip, 16 * MiB + 0x100);
  EXPECT_EQ(cpu.regs.rbx, layout::kPvhStartInfo);
  EXPECT_EQ(cpu.sregs.efer, 0u);
}

TEST_F(KernelLoaderTest, LoadsVmlinuxWithoutPvhNoteThroughTheZeroPage) {
  const auto kernel =
      make_elf({{16 * MiB, 16 * MiB, std::vector<uint8_t>(64, 0xc3), 64}}, 16 * MiB);
  const BootEntry entry = load_kernel(memory_, {write("vmlinux", kernel), "", "", 0});
  EXPECT_EQ(entry.mode, BootEntry::Mode::kLinux64);
  EXPECT_EQ(entry.entry, 16 * MiB);
  EXPECT_EQ(entry.boot_info, layout::kZeroPage);
  const auto params = memory_.read_obj<BootParams>(layout::kZeroPage);
  ASSERT_TRUE(params);
  EXPECT_EQ(value(params->hdr.boot_flag), kBootFlag);
  EXPECT_EQ(value(params->hdr.header), kHdrSMagic);
  EXPECT_EQ(value(params->hdr.ramdisk_size), 0u);
  EXPECT_EQ(value(params->e820_entries), 4);
}

TEST_F(KernelLoaderTest, RejectsUnknownFormat) {
  const std::string path = write("junk", std::vector<uint8_t>(4096, 0x42));
  EXPECT_EQ(error_of([&] {
              load_kernel(memory_, {path, "", "", 0});
            }),
            "--kernel " + path + ": not a Linux kernel (neither a bzImage nor an ELF vmlinux)");
}

TEST_F(KernelLoaderTest, ReportsMissingFiles) {
  EXPECT_EQ(error_of([&] {
              load_kernel(memory_, {"/nonexistent/bzImage", "", "", 0});
            }),
            "--kernel /nonexistent/bzImage: No such file or directory");
  const std::string kernel = write("bzImage", make_bzimage());
  EXPECT_EQ(error_of([&] {
              load_kernel(memory_, {kernel, "/nonexistent/initrd", "", 0});
            }),
            "--initrd /nonexistent/initrd: No such file or directory");
}

TEST_F(KernelLoaderTest, RejectsCmdlineLongerThanTheKernelAccepts) {
  const std::string kernel = write("bzImage", make_bzimage());
  EXPECT_EQ(error_of([&] {
              load_kernel(memory_, {kernel, "", std::string(3000, 'x'), 0});
            }),
            "--cmdline is 3000 bytes, this kernel accepts at most 2047");
}

TEST_F(KernelLoaderTest, RejectsInitrdThatDoesNotFit) {
  const std::string kernel = write("bzImage", make_bzimage());
  const std::string initrd = write("initrd", std::vector<uint8_t>(20 * MiB));
  EXPECT_EQ(error_of([&] {
              load_kernel(memory_, {kernel, initrd, "", 0});
            }),
            "--initrd " + initrd +
                ": 20 MiB does not fit in guest memory below 64 MiB (try a larger --memory)");
}

TEST_F(KernelLoaderTest, RejectsKernelThatDoesNotFit) {
  const GuestMemory small = GuestMemory::allocate(16 * MiB);
  const std::string kernel = write("bzImage", make_bzimage());
  EXPECT_THAT(error_of([&] {
                load_kernel(small, {kernel, "", "", 0});
              }),
              HasSubstr("not enough guest memory for the kernel"));
}

}  // namespace
}  // namespace vmm::boot
