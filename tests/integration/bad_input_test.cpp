// The vmm binary on bad input: one line on stderr that names the problem, a non-zero status, no
// crash, no guest started. BadInput's need no /dev/kvm: vmm checks its options and opens every host
// file before it opens /dev/kvm (so on a host without KVM they would fail, saying there is none, if
// it did not). bad_input_kvm_test.cpp has what only loading into guest memory finds.
#include <fstream>
#include <vector>

#include <filesystem>

#include "boot/setup_header.hpp"
#include "tests/boot/test_images.hpp"
#include "tests/integration/bad_input.hpp"

namespace vmm::testing {
namespace {

TEST_F(BadInput, UnknownFlag) {
  expect_error({"--kernel", "k", "--frobnicate"}, 2, "--frobnicate");
}

TEST_F(BadInput, MissingKernelFlag) {
  expect_error({"--cpus", "2"}, 2, "--kernel is required");
}

TEST_F(BadInput, BadMemorySize) {
  expect_error({"--kernel", "k", "--memory", "lots"}, 2, "--memory lots: not a size");
}

TEST_F(BadInput, TooLittleMemory) {
  expect_error({"--kernel", "k", "--memory", "1M"}, 1, "too little memory");
}

TEST_F(BadInput, TooManyCpus) {
  expect_error({"--kernel", "k", "--cpus", "100000"}, 1, "--cpus");
}

TEST_F(BadInput, KernelThatDoesNotExist) {
  expect_error({"--kernel", "/nonexistent/bzImage"}, 1,
               "--kernel /nonexistent/bzImage: No such file or directory");
}

TEST_F(BadInput, KernelThatIsADirectory) {
  expect_error({"--kernel", "/"}, 1, "--kernel /: Is a directory");
}

TEST_F(BadInput, KernelThatIsNotAKernel) {
  const std::string path = file("text", std::vector<uint8_t>(4096, 'x'));
  expect_error({"--kernel", path}, 1, "not a Linux kernel");
}

TEST_F(BadInput, TruncatedKernel) {
  const std::string image = test_guest_image("hello");
  std::ifstream in(image, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1200u);
  bytes.resize(1100);  // the header survives, the payload doesn't
  expect_error({"--kernel", file("truncated", bytes)}, 1, "truncated");
}

TEST_F(BadInput, DiskThatDoesNotExist) {
  expect_error({"--kernel", test_guest_image("hello"), "--disk", "/nonexistent/root.img"}, 1,
               "--disk /nonexistent/root.img: No such file or directory");
}

TEST_F(BadInput, VsockSocketInAMissingDirectory) {
  expect_error({"--kernel", test_guest_image("hello"), "--vsock", "cid=3,socket=/nonexistent/v"}, 1,
               "--vsock cid=3,socket=/nonexistent/v: /nonexistent: No such file or directory");
}

TEST_F(BadInput, CmdlineWithAppend) {
  expect_error({"--kernel", "k", "--cmdline", "quiet", "--append", "rw"}, 2,
               "--append and --cmdline");
}

// A stock kernel's case, made small: a bzImage that says it is release 6.1.0-test, an ext4-looking
// disk, and a modules tree (modules.dep, modules.builtin) for vmm's built initramfs.
class BadInitramfsInput : public BadInput {
 protected:
  static constexpr const char* kRelease = "6.1.0-test";

  void SetUp() override {
    std::vector<uint8_t> image = boot::test_images::make_bzimage();
    const std::string version = std::string(kRelease) + " (test@vmm) #1 SMP";
    constexpr size_t kVersionAt = 0x400;  // inside the setup sectors, as a real kernel has it
    std::copy(version.begin(), version.end(), image.begin() + kVersionAt);
    image[kVersionAt + version.size()] = 0;
    boot::test_images::edit_header(image, [](boot::SetupHeader& h) {
      h.kernel_version = static_cast<uint16_t>(kVersionAt - 0x200);
    });
    kernel_ = file("bzImage", image);
    std::vector<uint8_t> disk(1 << 20, 0);
    disk[1024 + 56] = 0x53;  // the ext2/3/4 superblock's magic, 0xEF53
    disk[1024 + 57] = 0xef;
    disk_ = file("root.img", disk);
    modules_ = ::testing::TempDir() + "/vmm_bad_input_" + std::to_string(::getpid()) + "_modules";
  }
  void TearDown() override {
    std::filesystem::remove_all(modules_);
    BadInput::TearDown();
  }

  // A modules tree for `release` with virtio built in and `builtin` (one per line) too.
  std::string modules_tree(const std::string& release, const std::string& builtin) {
    std::string dir = modules_ + "/lib/modules/" + release;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/modules.dep") << "";
    std::ofstream(dir + "/modules.builtin")
        << "kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/block/virtio_blk.ko\n"
        << builtin;
    return dir;
  }

  std::string kernel_, disk_, modules_;
};

TEST_F(BadInitramfsInput, ModulesOfAnotherRelease) {
  const std::string dir = modules_tree("6.1.0-other", "kernel/fs/ext4/ext4.ko\n");
  expect_error({"--kernel", kernel_, "--disk", disk_, "--modules", dir}, 1,
               "modules for 6.1.0-other, but --kernel " + kernel_ + " is 6.1.0-test");
}

TEST_F(BadInitramfsInput, NoModulesForTheRelease) {
  expect_error({"--kernel", kernel_, "--disk", disk_, "--modules", modules_ + "/nothing"}, 1,
               "--modules " + modules_ + "/nothing");
}

TEST_F(BadInitramfsInput, NoModuleForTheRootFilesystem) {
  const std::string dir = modules_tree(kRelease, "");
  expect_error({"--kernel", kernel_, "--disk", disk_, "--modules", dir}, 1,
               "no module ext4 (neither built into the kernel nor in modules.dep)");
}

TEST_F(BadInitramfsInput, AFilesystemVmmCannotTell) {
  const std::string dir = modules_tree(kRelease, "kernel/fs/ext4/ext4.ko\n");
  const std::string blank = file("blank.img", std::vector<uint8_t>(1 << 20, 0));
  expect_error({"--kernel", kernel_, "--disk", blank, "--modules", dir}, 1,
               "--disk " + blank + ": no ext4, xfs or btrfs filesystem at its start");
}

TEST_F(BadInput, SnapshotOverlayInAnUnwritableTmpdir) {
  const std::string disk = file("base.img", std::vector<uint8_t>(1 << 20, 0));
  expect_error({"--kernel", test_guest_image("hello"), "--disk", disk + ",snapshot=on"}, 1,
               "--disk " + disk + ": snapshot overlay in $TMPDIR /nonexistent/tmp",
               {"TMPDIR=/nonexistent/tmp"});
}

TEST_F(BadInput, UnwritableSerialFile) {
  expect_error({"--kernel", test_guest_image("hello"), "--serial", "file:/nonexistent/dir/log"}, 1,
               "--serial file:/nonexistent/dir/log: No such file or directory");
}

}  // namespace
}  // namespace vmm::testing
