#include "boot/initramfs/modules.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "boot/initramfs/initramfs.hpp"
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
using testing::gzip_compressed;
using ::testing::HasSubstr;
using testing::write_file;
using testing::xz_compressed;
using testing::zstd_compressed;

constexpr std::string_view kRelease = "6.1.0-57-cloud-amd64";

std::vector<std::string> names_of(const std::vector<KernelModule>& modules) {
  std::vector<std::string> names;
  names.reserve(modules.size());
  for (const auto& module : modules) names.push_back(module.name);
  return names;
}

TEST(ModuleNameTest, FromModulesDepPaths) {
  EXPECT_EQ(module_name_of_path("kernel/drivers/virtio/virtio_mmio.ko"), "virtio_mmio");
  EXPECT_EQ(module_name_of_path("kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.xz"), "pvpanic_mmio");
  EXPECT_EQ(module_name_of_path("kernel/fs/ext4/ext4.ko.zst"), "ext4");
  EXPECT_EQ(module_name_of_path("kernel/fs/ext4/ext4.ko.gz"), "ext4");
  EXPECT_EQ(module_name_of_path("crc16.ko"), "crc16");
  EXPECT_EQ(module_name_of_path("kernel/x/readme.txt"), std::nullopt);
  EXPECT_EQ(module_name_of_path("kernel/x/a.ko.bz2"), std::nullopt);
  EXPECT_EQ(module_name_of_path("kernel/x/.ko"), std::nullopt);
  EXPECT_EQ(normalized_module_name("vmw-vsock_virtio-transport"), "vmw_vsock_virtio_transport");
}

// A tree with chained and shared dependencies, two builtins, and names with '-'.
class ModuleTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_dep(
        "kernel/a.ko: kernel/c.ko kernel/b-b.ko\n"
        "kernel/b-b.ko: kernel/c.ko\n"
        "kernel/c.ko:\n"
        "kernel/d.ko: kernel/c.ko\n"
        "kernel/uses-builtin.ko: kernel/builtin-one.ko kernel/c.ko\n"
        "kernel/broken.ko: kernel/missing.ko\n"
        "kernel/p.ko: kernel/q.ko\n"
        "kernel/q.ko: kernel/r.ko\n"
        "kernel/r.ko: kernel/p.ko\n");
    write_file(dir_.file("modules.builtin"), "kernel/builtin-one.ko\nkernel/fs/builtin_two.ko\n");
  }

  void write_dep(std::string_view text) { write_file(dir_.file("modules.dep"), text); }

  ModuleTree load() const { return ModuleTree::load(modules()); }
  ModulesDir modules() const { return {dir_.path(), "--modules " + dir_.path()}; }

  TempDir dir_;
};

TEST_F(ModuleTreeTest, DependenciesComeFirstAndEachOnce) {
  const std::string_view wanted[] = {"a", "d"};
  const auto order = load().load_order(wanted, {});
  EXPECT_THAT(names_of(order), ElementsAre("c", "b_b", "a", "d"));
  EXPECT_EQ(order[1].path, dir_.path() + "/kernel/b-b.ko");
}

TEST_F(ModuleTreeTest, BuiltinsNeedNoLoadingWhateverTheirSpelling) {
  const ModuleTree tree = load();
  EXPECT_TRUE(tree.is_builtin("builtin_one"));
  EXPECT_TRUE(tree.is_builtin("builtin-two"));
  EXPECT_FALSE(tree.is_builtin("c"));
  EXPECT_TRUE(tree.contains("b-b"));
  const std::string_view required[] = {"builtin-one", "builtin_two", "uses_builtin"};
  EXPECT_THAT(names_of(tree.load_order(required, {})), ElementsAre("c", "uses_builtin"));
}

TEST_F(ModuleTreeTest, AWantedModuleTheKernelLacksIsLeftOut) {
  const std::string_view required[] = {"d"};
  const std::string_view wanted[] = {"not_here", "a"};
  EXPECT_THAT(names_of(load().load_order(required, wanted)), ElementsAre("c", "d", "b_b", "a"));
}

TEST_F(ModuleTreeTest, ARequiredModuleTheKernelLacksIsNamed) {
  const std::string_view required[] = {"a", "xfs"};
  EXPECT_EQ(error_of([&] { load().load_order(required, {}); }),
            "--modules " + dir_.path() +
                ": no module xfs (neither built into the kernel nor in modules.dep)");
}

TEST_F(ModuleTreeTest, AMissingDependencyIsNamed) {
  const std::string_view wanted[] = {"broken"};
  EXPECT_THAT(error_of([&] { load().load_order({}, wanted); }),
              HasSubstr(": broken depends on missing, which modules.dep does not list"));
}

TEST_F(ModuleTreeTest, ACycleIsNamed) {
  const std::string_view required[] = {"p"};
  EXPECT_THAT(error_of([&] { load().load_order(required, {}); }),
              HasSubstr("dependency cycle: p -> q -> r -> p"));
}

TEST_F(ModuleTreeTest, AFolderWithoutModulesDepIsNotAModulesTree) {
  TempDir empty;
  EXPECT_EQ(error_of([&] {
              ModuleTree::load({empty.path(), "--modules /x"});
            }),
            "--modules /x: no modules.dep (not a kernel modules directory)");
}

TEST_F(ModuleTreeTest, MalformedLinesAreNamedByNumber) {
  write_dep("kernel/a.ko:\nkernel/b.ko kernel/a.ko\n");
  EXPECT_EQ(error_of([&] { load(); }),
            dir_.file("modules.dep") + ":2: no ':' (not a modules.dep line)");
  write_dep("kernel/a.txt:\n");
  EXPECT_THAT(error_of([&] { load(); }), HasSubstr(":1: kernel/a.txt is not a module"));
  write_dep("/lib/modules/x/kernel/a.ko:\n");
  EXPECT_THAT(error_of([&] { load(); }), HasSubstr(":1: /lib/modules/x/kernel/a.ko is absolute"));
}

TEST_F(ModuleTreeTest, WithoutModulesBuiltinNothingIsBuiltin) {
  std::filesystem::remove(dir_.file("modules.builtin"));
  const std::string_view required[] = {"builtin_one"};
  EXPECT_THAT(error_of([&] { load().load_order(required, {}); }),
              HasSubstr("no module builtin_one"));
}

TEST_F(ModuleTreeTest, SoftDependenciesComeFirstThroughTheirAliases) {
  write_dep(
      "kernel/fs.ko: kernel/c.ko\n"
      "kernel/c.ko:\n"
      "kernel/sum_fast.ko:\n"
      "kernel/sum-generic.ko:\n"
      "kernel/helper.ko:\n");
  write_file(dir_.file("modules.softdep"),
             "# Soft dependencies extracted from modules themselves.\n"
             "softdep fs pre: crypto-sum helper post: c\n"
             "softdep helper pre: fs\n"    // a soft cycle: no error
             "softdep c pre: nowhere\n");  // an alias nobody provides: nothing
  write_file(dir_.file("modules.alias"),
             "alias crypto-sum sum_fast\n"
             "alias crypto-sum sum_generic\n"
             "alias pci:v00001AF4d* c\n");
  const std::string_view required[] = {"fs"};
  EXPECT_THAT(names_of(load().load_order(required, {})),
              ElementsAre("sum_generic", "helper", "c", "fs"));
}

TEST_F(ModuleTreeTest, ABuiltinSoftDependencyNeedsNothing) {
  write_dep("kernel/fs.ko:\nkernel/sum_generic.ko:\n");
  write_file(dir_.file("modules.builtin"), "kernel/crypto/crc.ko\n");
  write_file(dir_.file("modules.softdep"), "softdep fs pre: crypto-sum\n");
  write_file(dir_.file("modules.alias"), "alias crypto-sum crc\nalias crypto-sum sum_generic\n");
  const std::string_view required[] = {"fs"};
  EXPECT_THAT(names_of(load().load_order(required, {})), ElementsAre("fs"));
}

class ModuleFileTest : public ::testing::Test {
 protected:
  // Writes `bytes` as the module file `name`, opens it and copies it out whole.
  std::vector<uint8_t> load(const std::string& name, std::span<const uint8_t> bytes) {
    write_file(dir_.file(name), bytes);
    const ModuleFile file = ModuleFile::open({"m", dir_.file(name)});
    std::vector<uint8_t> out(file.size());
    file.copy_to(out);
    return out;
  }
  std::string error_loading(const std::string& name, std::span<const uint8_t> bytes) {
    return error_of([&] { load(name, bytes); });
  }

  TempDir dir_;
  const std::vector<uint8_t> module_ = fake_module("m", kRelease);
};

TEST_F(ModuleFileTest, AnUncompressedModuleIsUsedAsItIs) {
  EXPECT_EQ(load("m.ko", module_), module_);
}

TEST_F(ModuleFileTest, XzZstdAndGzipModulesAreDecompressed) {
  EXPECT_EQ(load("m.ko.xz", xz_compressed(module_)), module_);
  EXPECT_EQ(load("m.ko.zst", zstd_compressed(module_)), module_);
  EXPECT_EQ(load("m.ko.gz", gzip_compressed(module_)), module_);
}

TEST_F(ModuleFileTest, ConcatenatedStreamsAndFramesDecompressWhole) {
  const std::vector<uint8_t> tail = bytes_of("the second part");
  auto xz = xz_compressed(module_);
  const auto xz_tail = xz_compressed(tail);
  xz.insert(xz.end(), xz_tail.begin(), xz_tail.end());
  auto zstd = zstd_compressed(module_);
  const auto zstd_tail = zstd_compressed(tail);
  zstd.insert(zstd.end(), zstd_tail.begin(), zstd_tail.end());
  auto gzip = gzip_compressed(module_);
  const auto gzip_tail = gzip_compressed(tail);
  gzip.insert(gzip.end(), gzip_tail.begin(), gzip_tail.end());
  std::vector<uint8_t> whole = module_;
  whole.insert(whole.end(), tail.begin(), tail.end());
  EXPECT_EQ(load("m.ko.xz", xz), whole);
  EXPECT_EQ(load("m.ko.zst", zstd), whole);
  EXPECT_EQ(load("m.ko.gz", gzip), whole);
}

TEST_F(ModuleFileTest, ABigModuleGrowsTheOutputPastItsFirstSize) {
  std::vector<uint8_t> big = module_;
  big.resize(3 << 20);
  for (size_t i = module_.size(); i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 31 / 7);
  // Not EXPECT_EQ: a failure would print megabytes.
  EXPECT_TRUE(load("big.ko.zst", zstd_compressed(big)) == big);
  EXPECT_TRUE(load("big.ko.xz", xz_compressed(big)) == big);
  EXPECT_TRUE(load("big.ko.gz", gzip_compressed(big)) == big);
}

TEST_F(ModuleFileTest, AModuleThatShrinksAfterOpeningIsNamed) {
  write_file(dir_.file("m.ko"), module_);
  const ModuleFile file = ModuleFile::open({"m", dir_.file("m.ko")});
  ASSERT_EQ(::truncate(dir_.file("m.ko").c_str(), 10), 0);
  std::vector<uint8_t> out(file.size());
  EXPECT_THAT(error_of([&] { file.copy_to(out); }),
              HasSubstr("m.ko: shorter than when it was opened"));
}

TEST_F(ModuleFileTest, CorruptOrTruncatedDataIsRefused) {
  auto xz = xz_compressed(module_);
  xz[xz.size() / 2] ^= 0xff;
  EXPECT_THAT(error_loading("m.ko.xz", xz), HasSubstr("m.ko.xz: truncated or corrupt xz data"));
  auto zstd = zstd_compressed(module_);
  zstd.resize(zstd.size() - 4);
  EXPECT_THAT(error_loading("m.ko.zst", zstd), HasSubstr("m.ko.zst: truncated zstd data"));
  EXPECT_THAT(error_loading("m.ko.zst", bytes_of("not zstd at all")),
              HasSubstr("m.ko.zst: corrupt zstd data"));
  EXPECT_THAT(error_loading("e.ko.zst", {}), HasSubstr("e.ko.zst: truncated zstd data"));
  auto gzip = gzip_compressed(module_);
  gzip.resize(gzip.size() - 12);
  EXPECT_THAT(error_loading("m.ko.gz", gzip), HasSubstr("m.ko.gz: truncated gzip data"));
  EXPECT_THAT(error_loading("m.ko.gz", bytes_of("not gzip at all")),
              HasSubstr("m.ko.gz: corrupt gzip data"));
}

TEST_F(ModuleFileTest, OutputIsBoundedAt64MiB) {
  const std::vector<uint8_t> zeros(ModuleFile::kMaxModuleSize + 1);
  EXPECT_THAT(error_loading("huge.ko.zst", zstd_compressed(zeros)),
              HasSubstr("huge.ko.zst: decompresses to more than 64 MiB"));
  EXPECT_THAT(error_loading("huge.ko.xz", xz_compressed(zeros)),
              HasSubstr("huge.ko.xz: decompresses to more than 64 MiB"));
  EXPECT_THAT(error_loading("huge.ko.gz", gzip_compressed(zeros)),
              HasSubstr("huge.ko.gz: decompresses to more than 64 MiB"));
}

TEST_F(ModuleFileTest, NonElfIsRefused) {
  EXPECT_THAT(error_loading("m.ko.gz", gzip_compressed(bytes_of("hello"))),
              HasSubstr("m.ko.gz: not a kernel module"));
  EXPECT_THAT(error_loading("text.ko", bytes_of("hello")),
              HasSubstr("text.ko: not a kernel module"));
  EXPECT_THAT(error_loading("empty.ko", {}), HasSubstr("empty.ko: not a kernel module"));
  EXPECT_THAT(error_of([&] {
                ModuleFile::open({"m", dir_.file("absent.ko")});
              }),
              HasSubstr("absent.ko: No such file or directory"));
}

TEST(ModuleVermagicTest, TheReleaseIsVermagicsFirstWord) {
  EXPECT_EQ(module_vermagic_release(fake_module("m", "6.1.0-50-amd64")), "6.1.0-50-amd64");
  EXPECT_EQ(module_vermagic_release(bytes_of("\x7f"
                                             "ELF without modinfo")),
            std::nullopt);
}

// The module set resolved in Debian's real trees.
using RealModuleTreeTest = testing::LabKernelTest;

TEST_F(RealModuleTreeTest, CloudKernelHasExt4BuiltInAndVirtioAsModules) {
  const ModuleTree tree = ModuleTree::load({modules_dir("cloud"), "cloud"});
  EXPECT_TRUE(tree.is_builtin("ext4"));
  const auto modules = initramfs_modules(tree, "ext4");
  EXPECT_THAT(names_of(modules),
              ElementsAre("virtio_ring", "virtio", "virtio_mmio", "virtio_blk", "failover",
                          "net_failover", "virtio_net", "vsock",
                          "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport",
                          "pvpanic", "pvpanic_mmio", "virtio_console", "fuse", "virtiofs"));
  for (const auto& module : modules) {
    EXPECT_TRUE(std::filesystem::is_regular_file(module.path)) << module.path;
  }
}

TEST_F(RealModuleTreeTest, GenericKernelHasExt4AsAModuleWithItsDependencies) {
  const ModuleTree tree = ModuleTree::load({modules_dir("generic"), "generic"});
  EXPECT_FALSE(tree.is_builtin("ext4"));
  const auto names = names_of(initramfs_modules(tree, "ext4"));
  const auto position = [&](std::string_view name) {
    return std::find(names.begin(), names.end(), name) - names.begin();
  };
  // crc32c_generic: ext4's and jbd2's soft dependency (crypto-crc32c, an alias), never the
  // accelerated crc32c_intel, which fails to load on a CPU without SSE 4.2.
  for (const char* dependency : {"jbd2", "mbcache", "crc16", "crc32c_generic"}) {
    EXPECT_LT(position(dependency), position("ext4")) << dependency;
  }
  EXPECT_LT(position("crc32c_generic"), position("jbd2"));
  EXPECT_THAT(names, ::testing::Not(::testing::Contains("crc32c_intel")));
  EXPECT_LT(position("ext4"), static_cast<long>(names.size()));
  EXPECT_LT(position("virtio_ring"), position("virtio_blk"));
  EXPECT_THAT(names, ::testing::Contains("pvpanic_mmio"));
}

TEST_F(RealModuleTreeTest, XfsAndBtrfsResolveWithTheirDependencies) {
  const ModuleTree tree = ModuleTree::load({modules_dir("cloud"), "cloud"});
  EXPECT_THAT(names_of(initramfs_modules(tree, "xfs")),
              ::testing::IsSupersetOf({"libcrc32c", "xfs"}));
  const auto btrfs = names_of(initramfs_modules(tree, "btrfs"));
  EXPECT_THAT(btrfs, ::testing::IsSupersetOf({"xor", "raid6_pq", "libcrc32c", "btrfs"}));
}

}  // namespace
}  // namespace vmm::boot
