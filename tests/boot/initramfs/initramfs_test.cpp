#include "boot/initramfs/initramfs.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "base/util/file.hpp"
#include "tests/boot/initramfs/cpio_reader.hpp"
#include "tests/boot/initramfs/module_files.hpp"
#include "tests/boot/lab_kernels.hpp"
#include "tests/boot/test_images.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::boot {
namespace {

using devices::testing::TempDir;
using test_images::error_of;
using testing::bytes_of;
using ::testing::ElementsAre;
using testing::fake_module;
using ::testing::HasSubstr;
using testing::read_cpio;
using testing::write_file;
using testing::xz_compressed;
using testing::zstd_compressed;

const std::string kRelease = "6.1.0-57-cloud-amd64";
const std::vector<uint8_t> kInit = bytes_of(
    "\x7f"
    "ELF the init program");

std::vector<std::string> names_in(const testing::CpioArchive& archive) {
  std::vector<std::string> names;
  for (const auto& entry : archive.entries) names.push_back(entry.name);
  return names;
}

// A kernel with virtio as modules, one xz- and one zstd-compressed, and ext4 built in, as
// Debian's cloud kernel but smaller.
class InitramfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(path("modules.dep"),
               "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko\n"
               "kernel/drivers/virtio/virtio.ko:\n"
               "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko\n"
               "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.zst:\n"
               "kernel/fs/xfs/xfs.ko:\n"
               "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko\n"
               "kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko "
               "kernel/fs/fuse/fuse.ko\n"
               "kernel/fs/fuse/fuse.ko:\n"
               "kernel/fs/overlayfs/overlay.ko:\n");
    write_file(path("modules.builtin"), "kernel/fs/ext4/ext4.ko\n");
    add_module("kernel/drivers/virtio/virtio_mmio.ko", "virtio_mmio");
    add_module("kernel/drivers/virtio/virtio.ko", "virtio");
    write_file(path("kernel/drivers/block/virtio_blk.ko.xz"),
               xz_compressed(fake_module("virtio_blk", kRelease)));
    write_file(path("kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.zst"),
               zstd_compressed(fake_module("pvpanic_mmio", kRelease)));
    add_module("kernel/fs/xfs/xfs.ko", "xfs");
    add_module("kernel/drivers/char/virtio_console.ko", "virtio_console");
    add_module("kernel/fs/fuse/virtiofs.ko", "virtiofs");
    add_module("kernel/fs/fuse/fuse.ko", "fuse");
    add_module("kernel/fs/overlayfs/overlay.ko", "overlay");
  }

  std::string path(const std::string& name) const { return dir_.file(name); }
  void add_module(const std::string& file, std::string_view name,
                  std::string_view release = kRelease) {
    write_file(path(file), fake_module(name, release));
  }
  InitramfsSpec spec(const std::string& root_fs_module = "ext4") const {
    return {kRelease, {dir_.path(), "--modules " + dir_.path()}, root_fs_module, kInit};
  }
  InitramfsSpec run_spec(const RunJob& job = run_job()) const {
    InitramfsSpec run = spec("no-root-module-in-run-mode");
    run.run_job = job;
    return run;
  }
  static RunJob run_job() {
    return {.uid = 1000,
            .gid = 1000,
            .groups = {},
            .cwd = "/home/me",
            .mounts = {{"vmm-root", "/", true}, {"vmm-cwd", "/home/me", false}},
            .argv = {"id"},
            .env = {"PATH=/usr/bin"}};
  }

  TempDir dir_;
};

TEST_F(InitramfsTest, HoldsTheAbisLayout) {
  const auto parsed = read_cpio(build_initramfs(spec()));
  ASSERT_TRUE(parsed.has_trailer);
  EXPECT_THAT(names_in(parsed),
              ElementsAre("init", "dev", "dev/console", "proc", "sys", "root", "vmm", "vmm/modules",
                          "vmm/modules/virtio.ko", "vmm/modules/virtio_mmio.ko",
                          "vmm/modules/virtio_blk.ko", "vmm/modules/pvpanic_mmio.ko",
                          "vmm/modules/virtio_console.ko", "vmm/modules/fuse.ko",
                          "vmm/modules/virtiofs.ko", "vmm/modules.load"));
  EXPECT_EQ(parsed.find("init")->mode, S_IFREG | 0755u);
  EXPECT_EQ(parsed.find("init")->data, kInit);
  const auto* console = parsed.find("dev/console");
  EXPECT_EQ(console->mode, S_IFCHR | 0600u);
  EXPECT_EQ(console->rdev_major, 5u);
  EXPECT_EQ(console->rdev_minor, 1u);
  for (const char* folder : {"dev", "proc", "sys", "root", "vmm", "vmm/modules"}) {
    EXPECT_EQ(parsed.find(folder)->mode, S_IFDIR | 0755u) << folder;
  }
  EXPECT_EQ(parsed.find("vmm/modules.load")->text(),
            "virtio\nvirtio_mmio\nvirtio_blk\npvpanic_mmio\nvirtio_console\nfuse\nvirtiofs\n");
}

TEST_F(InitramfsTest, ModulesAreStoredUncompressedUnderTheirNames) {
  const auto parsed = read_cpio(build_initramfs(spec()));
  EXPECT_EQ(parsed.find("vmm/modules/virtio_mmio.ko")->data, fake_module("virtio_mmio", kRelease));
  EXPECT_EQ(parsed.find("vmm/modules/virtio_blk.ko")->data, fake_module("virtio_blk", kRelease));
  EXPECT_EQ(parsed.find("vmm/modules/pvpanic_mmio.ko")->data,
            fake_module("pvpanic_mmio", kRelease));
}

TEST_F(InitramfsTest, TheRootFilesystemsModuleFollowsTheVirtioOnes) {
  const auto parsed = read_cpio(build_initramfs(spec("xfs")));
  EXPECT_EQ(parsed.find("vmm/modules.load")->text(),
            "virtio\nvirtio_mmio\nvirtio_blk\nxfs\npvpanic_mmio\nvirtio_console\nfuse\nvirtiofs\n");
}

// As vmm uses it: opened first, moved into place, then written straight into (guest) memory that
// is not known to be zero.
TEST_F(InitramfsTest, WritesIntoTheCallersMemoryAfterAMove) {
  Initramfs opened(spec());
  const Initramfs initramfs(std::move(opened));
  ASSERT_EQ(initramfs.modules().size(), 7u);
  EXPECT_EQ(initramfs.modules()[2].path, path("kernel/drivers/block/virtio_blk.ko.xz"));
  std::vector<uint8_t> memory(initramfs.size(), 0xa5);
  initramfs.write_to(memory);
  EXPECT_EQ(memory, build_initramfs(spec()));
  EXPECT_EQ(read_cpio(memory).find("vmm/modules/virtio_blk.ko")->data,
            fake_module("virtio_blk", kRelease));
}

TEST_F(InitramfsTest, AKernelWithEverythingBuiltInGetsAnEmptyList) {
  write_file(path("modules.dep"), "");
  write_file(path("modules.builtin"),
             "kernel/drivers/virtio/virtio_mmio.ko\nkernel/drivers/block/virtio_blk.ko\n"
             "kernel/fs/ext4/ext4.ko\n");
  const auto parsed = read_cpio(build_initramfs(spec()));
  EXPECT_THAT(names_in(parsed), ElementsAre("init", "dev", "dev/console", "proc", "sys", "root",
                                            "vmm", "vmm/modules", "vmm/modules.load"));
  EXPECT_EQ(parsed.find("vmm/modules.load")->text(), "");
}

TEST_F(InitramfsTest, AMissingRootModuleIsNamedWithTheFolder) {
  EXPECT_EQ(error_of([&] { build_initramfs(spec("btrfs")); }),
            "--modules " + dir_.path() +
                ": no module btrfs (neither built into the kernel nor in modules.dep)");
}

TEST_F(InitramfsTest, ModulesOfAnotherBuildAreRefused) {
  add_module("kernel/drivers/virtio/virtio_mmio.ko", "virtio_mmio", "6.1.0-50-amd64");
  EXPECT_EQ(error_of([&] { build_initramfs(spec()); }),
            "--modules " + dir_.path() +
                ": virtio_mmio is built for 6.1.0-50-amd64, not for the kernel's " + kRelease);
}

TEST_F(InitramfsTest, ARunJobGetsTheRunModulesAndTheJob) {
  const auto parsed = read_cpio(build_initramfs(run_spec()));
  EXPECT_THAT(names_in(parsed),
              ElementsAre("init", "dev", "dev/console", "proc", "sys", "root", "vmm", "vmm/modules",
                          "vmm/modules/virtio.ko", "vmm/modules/virtio_mmio.ko",
                          "vmm/modules/virtio_console.ko", "vmm/modules/fuse.ko",
                          "vmm/modules/virtiofs.ko", "vmm/modules/overlay.ko",
                          "vmm/modules/pvpanic_mmio.ko", "vmm/modules.load", "vmm/run.job"));
  EXPECT_EQ(parsed.find("vmm/modules.load")->text(),
            "virtio\nvirtio_mmio\nvirtio_console\nfuse\nvirtiofs\noverlay\npvpanic_mmio\n");
  const auto* job = parsed.find("vmm/run.job");
  EXPECT_EQ(job->mode, S_IFREG | 0600u);
  EXPECT_EQ(job->data, encode_run_job(run_job()));
}

TEST_F(InitramfsTest, BuiltInRunModulesAreLeftOut) {
  write_file(path("modules.builtin"),
             "kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\nkernel/fs/fuse/fuse.ko\n");
  EXPECT_EQ(read_cpio(build_initramfs(run_spec())).find("vmm/modules.load")->text(),
            "virtio\nvirtio_mmio\nvirtio_console\nvirtiofs\npvpanic_mmio\n");
}

TEST_F(InitramfsTest, ARunWithoutVirtioFsIsNamedWithTheFolder) {
  write_file(path("modules.dep"),
             "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko\n"
             "kernel/drivers/virtio/virtio.ko:\n"
             "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko\n"
             "kernel/fs/overlayfs/overlay.ko:\n");
  EXPECT_EQ(error_of([&] { build_initramfs(run_spec()); }),
            "--modules " + dir_.path() +
                ": no module virtiofs (neither built into the kernel nor in modules.dep)");
}

TEST_F(InitramfsTest, ABadRunJobFailsBeforeAnyModuleIsRead) {
  write_file(path("modules.dep"), "kernel/fs/fuse/virtiofs.ko: kernel/absent.ko\n");
  RunJob job = run_job();
  job.argv.clear();
  EXPECT_EQ(error_of([&] { build_initramfs(run_spec(job)); }), "run job: no command to run");
}

class FindModulesDirTest : public ::testing::Test {
 protected:
  // A modules folder for `release` at `folder` (a modules.dep is what makes one).
  void make_modules(const std::string& folder) { write_file(folder + "/modules.dep", ""); }
  ModulesDir find(const std::string& given) const {
    return find_modules_dir(given, kRelease, "--kernel vmlinuz");
  }
  std::string error_finding(const std::string& given) const {
    return error_of([&] { find(given); });
  }

  TempDir dir_;
};

TEST_F(FindModulesDirTest, TheReleasesOwnFolder) {
  make_modules(dir_.file(kRelease));
  EXPECT_EQ(find(dir_.file(kRelease)).path, dir_.file(kRelease));
  EXPECT_EQ(find(dir_.file(kRelease)).name, "--modules " + dir_.file(kRelease));
}

TEST_F(FindModulesDirTest, AFolderNotNamedLikeARelease) {
  make_modules(dir_.file("mods"));
  EXPECT_EQ(find(dir_.file("mods")).path, dir_.file("mods"));
}

TEST_F(FindModulesDirTest, AFolderHoldingTheRelease) {
  make_modules(dir_.file(kRelease));
  make_modules(dir_.file("6.1.0-50-amd64"));
  EXPECT_EQ(find(dir_.path()).path, dir_.file(kRelease));
}

TEST_F(FindModulesDirTest, AnUnpackedKernelPackage) {
  make_modules(dir_.file("lib/modules/" + kRelease));
  EXPECT_EQ(find(dir_.path()).path, dir_.file("lib/modules/" + kRelease));
  EXPECT_EQ(find(dir_.path()).name, "--modules " + dir_.path());
}

TEST_F(FindModulesDirTest, AnotherReleasesFolderIsAMismatch) {
  make_modules(dir_.file("6.1.0-50-amd64"));
  EXPECT_EQ(error_finding(dir_.file("6.1.0-50-amd64")),
            "--modules " + dir_.file("6.1.0-50-amd64") +
                ": modules for 6.1.0-50-amd64, but --kernel vmlinuz is 6.1.0-57-cloud-amd64");
}

TEST_F(FindModulesDirTest, ALinkIsJudgedByItsTarget) {
  make_modules(dir_.file("lib/modules/6.1.0-50-amd64"));
  std::filesystem::create_directory_symlink("lib/modules/6.1.0-50-amd64", dir_.file("modules"));
  EXPECT_THAT(error_finding(dir_.file("modules")), HasSubstr(": modules for 6.1.0-50-amd64, but"));
  make_modules(dir_.file("lib/modules/" + kRelease));
  std::filesystem::create_directory_symlink("lib/modules/" + kRelease, dir_.file("good"));
  EXPECT_EQ(find(dir_.file("good")).path, dir_.file("good"));
}

TEST_F(FindModulesDirTest, APackageOfOtherReleasesSaysWhichItHas) {
  make_modules(dir_.file("lib/modules/6.1.0-50-amd64"));
  make_modules(dir_.file("lib/modules/6.1.0-51-amd64"));
  EXPECT_EQ(error_finding(dir_.path()),
            "--modules " + dir_.path() +
                ": modules for 6.1.0-50-amd64, 6.1.0-51-amd64, but --kernel vmlinuz is " +
                kRelease);
}

TEST_F(FindModulesDirTest, NotAModulesFolder) {
  EXPECT_EQ(error_finding(dir_.path()),
            "--modules " + dir_.path() +
                ": no modules.dep (not a kernel modules directory, nor one holding lib/modules/" +
                kRelease + ")");
  EXPECT_EQ(error_finding(dir_.file("absent")),
            "--modules " + dir_.file("absent") + ": No such file or directory");
  write_file(dir_.file("file"), "");
  EXPECT_EQ(error_finding(dir_.file("file")),
            "--modules " + dir_.file("file") + ": not a directory");
}

TEST_F(FindModulesDirTest, WithoutModulesTheSystemsFolder) {
  make_modules(dir_.file(kRelease));
  const ModulesDir found =
      find_modules_dir(std::nullopt, kRelease, "--kernel vmlinuz", dir_.path());
  EXPECT_EQ(found.path, dir_.file(kRelease));
  EXPECT_EQ(found.name, dir_.file(kRelease));
  EXPECT_EQ(error_of([&] {
              find_modules_dir(std::nullopt, "6.1.0-50-amd64", "--kernel vmlinuz", dir_.path());
            }),
            "--kernel vmlinuz (release 6.1.0-50-amd64): no modules at " + dir_.path() +
                "/6.1.0-50-amd64; pass --modules DIR (the kernel package's "
                "lib/modules/6.1.0-50-amd64) or --initrd FILE");
}

// Debian's real kernels, found as a user would give them: the unpacked package.
using RealInitramfsTest = testing::LabKernelTest;

TEST_F(RealInitramfsTest, DebianKernelsGetTheirModulesUncompressedAndInOrder) {
  for (const std::string flavour : {"cloud", "generic"}) {
    SCOPED_TRACE(flavour);
    const ModulesDir modules =
        find_modules_dir(file(flavour, ""), release(flavour), "--kernel vmlinuz");
    EXPECT_EQ(std::filesystem::canonical(modules.path),
              std::filesystem::canonical(modules_dir(flavour)));
    const auto expected = initramfs_modules(ModuleTree::load(modules), "ext4");
    const auto parsed = read_cpio(build_initramfs({release(flavour), modules, "ext4", kInit}));
    std::string load_list;
    for (const auto& module : expected) {
      const auto* entry = parsed.find("vmm/modules/" + module.name + ".ko");
      ASSERT_NE(entry, nullptr) << module.name;
      EXPECT_EQ(entry->data, read_file(module.path, "")) << module.name;
      load_list += module.name + "\n";
    }
    EXPECT_EQ(parsed.find("vmm/modules.load")->text(), load_list);
    EXPECT_EQ(parsed.find("init")->data, kInit);
  }
}

// The names run mode asks for are Debian's: each kernel has them as modules, fuse with virtiofs.
TEST_F(RealInitramfsTest, DebianKernelsHaveTheRunModules) {
  for (const std::string flavour : {"cloud", "generic"}) {
    SCOPED_TRACE(flavour);
    const ModulesDir modules = find_modules_dir(file(flavour, ""), release(flavour), "--kernel x");
    std::vector<std::string> names;
    for (const auto& module : run_initramfs_modules(ModuleTree::load(modules))) {
      names.push_back(module.name);
    }
    EXPECT_THAT(names, ::testing::IsSupersetOf({"virtio_mmio", "virtio_console", "fuse", "virtiofs",
                                                "overlay", "pvpanic_mmio"}));
  }
}

}  // namespace
}  // namespace vmm::boot
