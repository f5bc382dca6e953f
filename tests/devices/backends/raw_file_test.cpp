#include "devices/backends/raw_file.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using ::testing::StrEq;

class RawFileTest : public ::testing::Test {
 protected:
  // A regular file of `size` bytes in the temp dir.
  std::string make_image(const std::string& name, size_t size) {
    std::string path = dir_.file(name);
    std::ofstream(path, std::ios::binary) << std::string(size, 'x');
    return path;
  }

  // The vmm::Error message RawFile::open throws, or nullopt if it opens.
  static std::optional<std::string> open_error(const std::string& path, bool read_only) {
    try {
      RawFile::open(path, read_only);
    } catch (const Error& e) {
      return e.what();
    }
    return std::nullopt;
  }

  testing::TempDir dir_;
};

TEST_F(RawFileTest, MissingFileNamesThePath) {
  const std::string path = dir_.file("missing.img");
  EXPECT_THAT(open_error(path, false),
              ::testing::Optional(StrEq(path + ": No such file or directory")));
  EXPECT_THAT(open_error(path, true),
              ::testing::Optional(StrEq(path + ": No such file or directory")));
}

TEST_F(RawFileTest, DirectoryIsRefused) {
  EXPECT_THAT(open_error(dir_.path(), false),
              ::testing::Optional(StrEq(dir_.path() + ": is a directory")));
  EXPECT_THAT(open_error(dir_.path(), true),
              ::testing::Optional(StrEq(dir_.path() + ": is a directory")));
}

TEST_F(RawFileTest, CharacterDeviceIsRefused) {
  EXPECT_THAT(open_error("/dev/null", false),
              ::testing::Optional(StrEq("/dev/null: not a regular file or block device")));
  EXPECT_THAT(open_error("/dev/null", true),
              ::testing::Optional(StrEq("/dev/null: not a regular file or block device")));
}

TEST_F(RawFileTest, FifoIsRefusedWithoutBlocking) {
  const std::string path = dir_.file("fifo");
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  EXPECT_THAT(open_error(path, true),
              ::testing::Optional(StrEq(path + ": not a regular file or block device")));
}

TEST_F(RawFileTest, ReportsSizeModeAndPath) {
  const std::string path = make_image("disk.img", 12345);
  const RawFile writable = RawFile::open(path, false);
  EXPECT_EQ(writable.size(), 12345u);
  EXPECT_FALSE(writable.read_only());
  EXPECT_EQ(writable.path(), path);
  EXPECT_EQ(::fcntl(writable.fd(), F_GETFL) & O_ACCMODE, O_RDWR);
}

TEST_F(RawFileTest, ReadOnlyOpenIsReadOnly) {
  const std::string path = make_image("disk.img", 4096);
  const RawFile file = RawFile::open(path, true);
  EXPECT_TRUE(file.read_only());
  EXPECT_EQ(file.size(), 4096u);
  EXPECT_EQ(::fcntl(file.fd(), F_GETFL) & O_ACCMODE, O_RDONLY);
  char byte = 'y';
  EXPECT_EQ(::pwrite(file.fd(), &byte, 1, 0), -1);
}

TEST_F(RawFileTest, DescriptorIsCloseOnExecAndBlocking) {
  const RawFile file = RawFile::open(make_image("disk.img", 512), false);
  EXPECT_NE(::fcntl(file.fd(), F_GETFD) & FD_CLOEXEC, 0);
  // O_NONBLOCK only guards open() against FIFOs; the thread pool's preadv must block.
  EXPECT_EQ(::fcntl(file.fd(), F_GETFL) & O_NONBLOCK, 0);
}

TEST_F(RawFileTest, UnwritableFileOpenedWritableSuggestsReadOnly) {
  const std::string path = make_image("disk.img", 512);
  ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  // Root ignores file modes, so the attempt runs in a (forked) child that drops to an
  // unprivileged user; the readable file must still open read-only.
  EXPECT_EXIT(
      {
        if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) _exit(2);
        const auto error = open_error(path, false);
        std::fprintf(stderr, "%s\n", error.value_or("opened").c_str());
        _exit(open_error(path, true) ? 3 : 0);
      },
      ::testing::ExitedWithCode(0),
      "disk.img: Permission denied \\(readonly=on opens it read-only\\)");
}

TEST_F(RawFileTest, SecondWriterInTheSameProcessIsRefused) {
  const std::string path = make_image("disk.img", 512);
  {
    const RawFile first = RawFile::open(path, false);
    EXPECT_THAT(
        open_error(path, false),
        ::testing::Optional(
            StrEq(path + ": in use (locked by another vmm, QEMU, or another --disk of this VM)")));
  }
  // The lock goes with the descriptor.
  EXPECT_EQ(open_error(path, false), std::nullopt);
}

TEST_F(RawFileTest, ReadersShareButExcludeWriters) {
  const std::string path = make_image("disk.img", 512);
  {
    const RawFile first = RawFile::open(path, true);
    const RawFile second = RawFile::open(path, true);
    EXPECT_THAT(
        open_error(path, false),
        ::testing::Optional(
            StrEq(path + ": in use (locked by another vmm, QEMU, or another --disk of this VM)")));
  }
  const RawFile writer = RawFile::open(path, false);
  EXPECT_THAT(open_error(path, true),
              ::testing::Optional(StrEq(
                  path + ": in use (locked by another vmm, QEMU, or another --disk of this VM)")));
}

// A loop device bound to a 1 MiB file: its node's st_size is 0, so the size must come from
// BLKGETSIZE64. LO_FLAGS_AUTOCLEAR unbinds it when the last descriptor closes, even on a crash.
TEST_F(RawFileTest, BlockDeviceSizeComesFromTheDevice) {
  if (::geteuid() != 0) GTEST_SKIP() << "binding a loop device needs root";
  const std::string backing_path = make_image("backing.img", 1 << 20);
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) GTEST_SKIP() << "no /dev/loop-control here";
  const int index = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
  if (index < 0) GTEST_SKIP() << "no free loop device";
  const std::string loop_path = "/dev/loop" + std::to_string(index);
  UniqueFd loop(::open(loop_path.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd backing(::open(backing_path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(backing);
  if (!loop) GTEST_SKIP() << "no node " << loop_path << " here";
  loop_config config{};
  config.fd = static_cast<uint32_t>(backing.get());
  config.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_READ_ONLY;
  if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) != 0) {
    GTEST_SKIP() << "cannot bind " << loop_path << ": " << std::strerror(errno);
  }
  const RawFile file = RawFile::open(loop_path, true);
  EXPECT_EQ(file.size(), 1u << 20);
}

}  // namespace
}  // namespace vmm::devices
