#include "boot/initramfs/root_fs.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "base/util/unique_fd.hpp"
#include "tests/boot/initramfs/module_files.hpp"
#include "tests/boot/test_images.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::boot {
namespace {

using devices::testing::TempDir;
using test_images::error_of;
using testing::write_file;

class RootFsTest : public ::testing::Test {
 protected:
  // An image of `size` zero bytes with `magic` at `offset`.
  std::optional<std::string> detect(size_t size, size_t offset = 0, std::string_view magic = "") {
    std::vector<uint8_t> image(size);
    std::copy(magic.begin(), magic.end(), image.begin() + static_cast<ptrdiff_t>(offset));
    write_file(dir_.file("disk.img"), image);
    return detect_file(dir_.file("disk.img"));
  }
  std::optional<std::string> detect_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << path;
    return detect_root_fs_module(fd.get(), "--disk " + path);
  }

  TempDir dir_;
};

TEST_F(RootFsTest, SuperblockMagicsNameTheirModules) {
  EXPECT_EQ(detect(4096, 1024 + 56, "\x53\xef"), "ext4");
  EXPECT_EQ(detect(4096, 0, "XFSB"), "xfs");
  EXPECT_EQ(detect(0x20000, 0x10040, "_BHRfS_M"), "btrfs");
}

TEST_F(RootFsTest, UnknownShortAndEmptyImagesHaveNone) {
  EXPECT_EQ(detect(1 << 20), std::nullopt);
  EXPECT_EQ(detect(1024 + 57, 1024 + 56, "\x53"), std::nullopt);  // cut inside the ext magic
  EXPECT_EQ(detect(0x10044, 0x10040, "_BHR"), std::nullopt);      // cut inside the btrfs magic
  EXPECT_EQ(detect(0), std::nullopt);
}

TEST_F(RootFsTest, ReadsWithoutMovingTheFileOffset) {
  detect(4096);
  UniqueFd fd(::open(dir_.file("disk.img").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::lseek(fd.get(), 100, SEEK_SET), 100);
  detect_root_fs_module(fd.get(), "--disk x");
  EXPECT_EQ(::lseek(fd.get(), 0, SEEK_CUR), 100);
}

TEST_F(RootFsTest, AFailedReadNamesTheDisk) {
  UniqueFd fd(::open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_EQ(error_of([&] { detect_root_fs_module(fd.get(), "--disk /d"); }),
            "--disk /d: Is a directory");
}

// The real thing, when e2fsprogs is there: ext2 and ext4 images both want the ext4 module.
TEST_F(RootFsTest, Mke2fsImages) {
  if (std::system("command -v mke2fs >/dev/null") != 0) GTEST_SKIP() << "mke2fs is not installed";
  for (const std::string type : {"ext2", "ext4"}) {
    const std::string image = dir_.file(type + ".img");
    ASSERT_EQ(std::system(fmt::format("mke2fs -q -F -t {} {} 4M", type, image).c_str()), 0);
    EXPECT_EQ(detect_file(image), "ext4") << type;
  }
}

TEST(RootFsTypeTest, RootfstypeNamesItsModule) {
  EXPECT_EQ(rootfstype_module("ext2"), "ext4");
  EXPECT_EQ(rootfstype_module("ext3"), "ext4");
  EXPECT_EQ(rootfstype_module("ext4"), "ext4");
  EXPECT_EQ(rootfstype_module("xfs"), "xfs");
  EXPECT_EQ(rootfstype_module("btrfs"), "btrfs");
  EXPECT_EQ(rootfstype_module("f2fs"), "f2fs");
}

}  // namespace
}  // namespace vmm::boot
