#include "vmm/machine/snapshot_files.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/util/error.hpp"
#include "vmm/machine.hpp"

namespace vmm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr uint64_t kRam = uint64_t{16} << 20;
constexpr uint64_t kDiskBytes = uint64_t{1} << 20;

class SnapshotFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "vmm-snapfiles-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    dir_ = root_ + "/snap";
    disk_ = root_ + "/disk.img";
    resize(disk_, kDiskBytes);
  }
  void TearDown() override { fs::remove_all(root_); }

  static void resize(const std::string& path, uint64_t bytes) {
    std::ofstream(path, std::ios::app).close();
    fs::resize_file(path, bytes);
  }

  // What a machine with one disk of kDiskBytes would write, made here without KVM.
  SnapshotManifest manifest() const {
    SnapshotManifest m;
    m.vmm_version = vmm_build_version();
    m.cpu = host_cpu_identity();
    m.machine.cpus = 1;
    m.machine.memory_bytes = kRam;
    m.machine.kernel_path = "/boot/vmlinuz";
    DiskConfig disk;
    disk.path = disk_;
    m.machine.disks = {disk};
    m.disk_sizes = {kDiskBytes};
    return m;
  }

  void write_snapshot() {
    GuestMemory memory = GuestMemory::allocate(kRam);
    ASSERT_TRUE(memory.write(0x1000, std::vector<uint8_t>{1, 2, 3}));
    StateArchive state;
    state.add("vm", {9, 9});
    bool wrote_more = false;
    write_snapshot_files(dir_, memory, state.serialize(), manifest(),
                         [&wrote_more](const std::string&) { wrote_more = true; });
    EXPECT_TRUE(wrote_more);
  }

  std::string restore_error(RestoreConfig config) {
    config.snapshot_dir = dir_;
    config.serial.mode = SerialConfig::Mode::kNone;
    // A restore's checks come before /dev/kvm is opened: this one would fail.
    config.kvm_device = root_ + "/no-kvm";
    try {
      Machine::restore(config);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  std::string root_, dir_, disk_;
};

TEST_F(SnapshotFilesTest, WritesTheFolderAndReadsItBack) {
  write_snapshot();
  const SnapshotFiles files = read_snapshot_files(dir_, "--restore");
  EXPECT_EQ(files.manifest.machine.memory_bytes, kRam);
  EXPECT_EQ(files.manifest.disk_sizes, std::vector<uint64_t>{kDiskBytes});
  EXPECT_EQ(files.state.reader("vm").remaining(), 2u);
  EXPECT_EQ(files.memory_path, dir_ + "/memory");
  struct stat st {};
  ASSERT_EQ(::stat(files.memory_path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kRam);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, kRam / 4) << "the memory file is not sparse";
  EXPECT_FALSE(fs::exists(dir_ + "/manifest.json.tmp"));
}

TEST_F(SnapshotFilesTest, RefusesAFolderThatHoldsASnapshot) {
  write_snapshot();
  GuestMemory memory = GuestMemory::allocate(kRam);
  try {
    write_snapshot_files(dir_, memory, StateArchive().serialize(), manifest(),
                         [](const std::string&) {});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              dir_ + ": already holds a snapshot (manifest.json); choose a new directory");
  }
}

TEST_F(SnapshotFilesTest, RefusesAStateFileCutShortOrChanged) {
  write_snapshot();
  const std::string state = dir_ + "/state";
  const uint64_t size = fs::file_size(state);
  fs::resize_file(state, size - 1);
  EXPECT_THAT(restore_error({}), HasSubstr(state + ": " + std::to_string(size - 1) +
                                           " bytes, the manifest says " + std::to_string(size)));
  fs::resize_file(state, size);  // a zero where a byte was
  EXPECT_THAT(restore_error({}), HasSubstr(state + ": checksum mismatch (the file is corrupt)"));
}

TEST_F(SnapshotFilesTest, RefusesAManifestThatIsNotOne) {
  write_snapshot();
  std::ofstream(dir_ + "/manifest.json", std::ios::trunc) << "{\"format\":1";
  EXPECT_THAT(restore_error({}), HasSubstr("manifest.json: not JSON (a corrupt manifest)"));
  fs::remove(dir_ + "/manifest.json");
  EXPECT_THAT(restore_error({}), HasSubstr(dir_ + "/manifest.json: No such file or directory"));
}

TEST_F(SnapshotFilesTest, RefusesADiskOfAnotherSizeOrCount) {
  write_snapshot();
  const std::string other = root_ + "/other.img";
  resize(other, kDiskBytes + 4096);
  DiskConfig disk;
  disk.path = other;
  RestoreConfig config;
  config.disks = std::vector<DiskConfig>{disk};
  EXPECT_EQ(restore_error(config),
            fmt::format("--disk {}: {} bytes; the snapshot's guest had a disk of {} bytes there",
                        other, kDiskBytes + 4096, kDiskBytes));
  config.disks = std::vector<DiskConfig>{disk, disk};
  EXPECT_EQ(restore_error(config),
            "--restore " + dir_ + ": 2 --disk given; the snapshot's guest has 1");
}

TEST_F(SnapshotFilesTest, RefusesATruncatedMemoryFileBeforeKvm) {
  write_snapshot();
  fs::resize_file(dir_ + "/memory", kRam / 2);
  EXPECT_THAT(restore_error({}), HasSubstr("truncated memory file"));
}

}  // namespace
}  // namespace vmm
