#include "devices/backends/raw_file.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/loop.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using ::testing::StrEq;

constexpr const char* kInUse =
    ": in use: locked by another vmm, QEMU, or another --disk of this VM, which ";

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
    EXPECT_THAT(open_error(path, false), ::testing::Optional(StrEq(path + kInUse + "writes it")));
  }
  // The lock goes with the descriptor.
  EXPECT_EQ(open_error(path, false), std::nullopt);
}

TEST_F(RawFileTest, ReadersShareButExcludeWriters) {
  const std::string path = make_image("disk.img", 512);
  {
    const RawFile first = RawFile::open(path, true);
    const RawFile second = RawFile::open(path, true);
    EXPECT_THAT(open_error(path, false),
                ::testing::Optional(
                    StrEq(path + kInUse + "forbids writing it (readonly=on would share it)")));
  }
  const RawFile writer = RawFile::open(path, false);
  EXPECT_THAT(open_error(path, true), ::testing::Optional(StrEq(path + kInUse + "writes it")));
}

// QEMU's side of the image locks (block/file-posix.c, raw_apply_lock_bytes and
// raw_check_lock_bytes), on an open file description of its own as a QEMU process would hold:
// permission bits `uses` lock bytes 100 + bit, the bits it does not share lock 200 + bit.
class QemuLocks {
 public:
  static constexpr unsigned kConsistentRead = 0x1;
  static constexpr unsigned kWrite = 0x2;
  static constexpr unsigned kWriteUnchanged = 0x4;
  static constexpr unsigned kResize = 0x8;
  static constexpr unsigned kAll = kConsistentRead | kWrite | kWriteUnchanged | kResize;

  explicit QemuLocks(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CLOEXEC)) {
    EXPECT_TRUE(fd_);
  }

  // What `-drive file=PATH,format=raw` behind a virtio-blk device takes: read-write, it uses
  // reading and writing and shares all but writing (the device may be resized); readonly=on, it
  // uses reading and shares all but writing (share-rw=on: all).
  static QemuLocks writer(const std::string& path) {
    return QemuLocks(path, kConsistentRead | kWrite, kAll & ~kWrite);
  }
  static QemuLocks reader(const std::string& path, bool share_rw) {
    return QemuLocks(path, kConsistentRead, share_rw ? kAll : kAll & ~kWrite);
  }

  // Whether QEMU would refuse to take these permissions, as raw_check_lock_bytes decides.
  bool refused(unsigned uses, unsigned shares) const {
    for (off_t bit = 0; (1u << bit) <= kAll; ++bit) {
      if ((uses & (1u << bit)) != 0 && held_by_others(200 + bit)) return true;
      if ((shares & (1u << bit)) == 0 && held_by_others(100 + bit)) return true;
    }
    return false;
  }
  bool writer_refused() const { return refused(kConsistentRead | kWrite, kAll & ~kWrite); }
  bool reader_refused(bool share_rw) const {
    return refused(kConsistentRead, share_rw ? kAll : kAll & ~kWrite);
  }

  // Whether another open file description holds a lock on `byte`.
  bool held_by_others(off_t byte) const {
    flock lock{};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte;
    lock.l_len = 1;
    EXPECT_EQ(::fcntl(fd_.get(), F_OFD_GETLK, &lock), 0);
    return lock.l_type != F_UNLCK;
  }

 private:
  QemuLocks(const std::string& path, unsigned uses, unsigned shares) : QemuLocks(path) {
    for (off_t bit = 0; (1u << bit) <= kAll; ++bit) {
      if ((uses & (1u << bit)) != 0) lock(100 + bit);
      if ((shares & (1u << bit)) == 0) lock(200 + bit);
    }
  }

  void lock(off_t byte) {
    flock lock{};
    lock.l_type = F_RDLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = byte;
    lock.l_len = 1;
    EXPECT_EQ(::fcntl(fd_.get(), F_OFD_SETLK, &lock), 0) << "byte " << byte;
  }

  UniqueFd fd_;
};

TEST_F(RawFileTest, TakesQemusLockBytes) {
  const std::string path = make_image("disk.img", 512);
  const QemuLocks observer(path);
  const auto held = [&] {
    std::vector<off_t> bytes;
    for (off_t byte = 100; byte < 210; ++byte) {
      if (observer.held_by_others(byte)) bytes.push_back(byte);
    }
    return bytes;
  };
  {
    // Uses reading and writing; forbids writing and resizing.
    const RawFile writer = RawFile::open(path, false);
    EXPECT_THAT(held(), ::testing::ElementsAre(100, 101, 201, 203));
  }
  {
    // Uses reading; forbids writing and resizing.
    const RawFile reader = RawFile::open(path, true);
    EXPECT_THAT(held(), ::testing::ElementsAre(100, 201, 203));
  }
  EXPECT_THAT(held(), ::testing::IsEmpty());
}

TEST_F(RawFileTest, AnImageQemuWritesIsRefusedEvenReadOnly) {
  const std::string path = make_image("disk.img", 512);
  const QemuLocks qemu = QemuLocks::writer(path);
  EXPECT_THAT(open_error(path, false), ::testing::Optional(StrEq(path + kInUse + "writes it")));
  // The guest would cache what QEMU then changes under it.
  EXPECT_THAT(open_error(path, true), ::testing::Optional(StrEq(path + kInUse + "writes it")));
}

TEST_F(RawFileTest, AnImageQemuReadsIsSharedWithReadersOnlyUnlessItSharesWriting) {
  const std::string path = make_image("disk.img", 512);
  {
    const QemuLocks qemu = QemuLocks::reader(path, false);
    EXPECT_THAT(open_error(path, false),
                ::testing::Optional(
                    StrEq(path + kInUse + "forbids writing it (readonly=on would share it)")));
    EXPECT_EQ(open_error(path, true), std::nullopt);
  }
  const QemuLocks qemu = QemuLocks::reader(path, true);
  EXPECT_EQ(open_error(path, false), std::nullopt);
}

TEST_F(RawFileTest, QemuCannotWriteAnImageVmmUses) {
  const std::string path = make_image("disk.img", 512);
  const QemuLocks qemu(path);
  {
    const RawFile writer = RawFile::open(path, false);
    EXPECT_TRUE(qemu.writer_refused());
    EXPECT_TRUE(qemu.reader_refused(false));
    EXPECT_FALSE(qemu.reader_refused(true));  // QEMU's share-rw=on: it lets others write
  }
  {
    const RawFile reader = RawFile::open(path, true);
    EXPECT_TRUE(qemu.writer_refused());
    EXPECT_FALSE(qemu.reader_refused(false));
  }
  EXPECT_FALSE(qemu.writer_refused());
}

// The real QEMU (Debian's, installed for the lab), a q35 machine paused before its first
// instruction with the image on a virtio-blk-pci disk: it takes its locks as it opens the image.
class RealQemu {
 public:
  static std::optional<std::string> program() {
    for (const char* path : {"/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"}) {
      if (::access(path, X_OK) == 0) return path;
    }
    return std::nullopt;
  }

  // Starts it on `image` (read-write unless `read_only`), its stderr into `log`.
  RealQemu(const std::string& program, const std::string& image, bool read_only,
           const std::string& log) {
    const std::string drive =
        "file=" + image + ",format=raw,if=none,id=d" + (read_only ? ",readonly=on" : "");
    std::vector<std::string> args = {
        program, "-machine",    "q35",      "-accel",  "tcg",
        "-S",    "-nodefaults", "-display", "none",    "-monitor",
        "none",  "-drive",      drive,      "-device", "virtio-blk-pci,drive=d"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (::posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
  }
  ~RealQemu() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  RealQemu(const RealQemu&) = delete;
  RealQemu& operator=(const RealQemu&) = delete;

  bool started() const { return pid_ > 0; }
  // Its wait status once it has exited within `limit` (a liveness bound), else nullopt.
  std::optional<int> exit_within(std::chrono::seconds limit) {
    for (auto end = std::chrono::steady_clock::now() + limit;
         !status_ && std::chrono::steady_clock::now() < end;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        status_ = status;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Both ways against the real thing: a QEMU writing the image makes vmm refuse it, read-only too;
// vmm writing it makes QEMU refuse to start, read-only too.
TEST_F(RawFileTest, TheRealQemuAndVmmRefuseEachOther) {
  const std::optional<std::string> qemu = RealQemu::program();
  if (!qemu) GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/install-deps.sh does)";
  const std::string path = make_image("disk.img", 1 << 20);
  const std::string log = dir_.file("qemu.log");
  {
    RealQemu writer(*qemu, path, false, log);
    ASSERT_TRUE(writer.started());
    // It locks the image as it starts: wait (a liveness bound) until vmm sees the lock.
    std::optional<std::string> refused;
    for (int i = 0; i < 1000 && !refused && !writer.exit_within(std::chrono::seconds(0)); ++i) {
      refused = open_error(path, true);
      if (!refused) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(refused.has_value()) << "QEMU never locked the image: " << read_file(log);
    EXPECT_THAT(*refused, StrEq(path + kInUse + "writes it"));
    EXPECT_THAT(open_error(path, false), ::testing::Optional(StrEq(path + kInUse + "writes it")));
  }
  EXPECT_EQ(open_error(path, false), std::nullopt) << "QEMU's locks outlived it";
  for (const bool vmm_read_only : {false, true}) {
    SCOPED_TRACE(vmm_read_only ? "vmm reads" : "vmm writes");
    const RawFile vmm = RawFile::open(path, vmm_read_only);
    RealQemu refused(*qemu, path, false, log);
    ASSERT_TRUE(refused.started());
    const std::optional<int> status = refused.exit_within(std::chrono::seconds(30));
    ASSERT_TRUE(status.has_value()) << "QEMU started on an image vmm uses";
    EXPECT_NE(*status, 0);
    EXPECT_THAT(read_file(log), ::testing::HasSubstr("Failed to get"));
  }
}

TEST_F(RawFileTest, AnExclusiveWholeFileLockIsRefused) {
  const std::string path = make_image("disk.img", 512);
  UniqueFd other(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(other);
  flock lock{};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  ASSERT_EQ(::fcntl(other.get(), F_OFD_SETLK, &lock), 0);
  EXPECT_THAT(open_error(path, true),
              ::testing::Optional(StrEq(path + kInUse + "holds an exclusive lock on it")));
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
