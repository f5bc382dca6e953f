#include "devices/backends/disk_image.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/backends/io_requests.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::devices {
namespace {

using Engine = AsyncIo::Engine;
using Overlay = DiskImage::Overlay;
using testing::buffer;
using ::testing::ElementsAre;
using ::testing::Pair;
using testing::pattern;
using testing::read_request;
using testing::reap_all;
using testing::run;
using testing::write_request;

constexpr uint64_t kSector = 512;
constexpr uint64_t kDiskSize = 1 << 20;
constexpr unsigned kDepth = 64;
constexpr const char* kInUse =
    ": in use: locked by another vmm, QEMU, or another --disk of this VM, which ";

IoRequest range_request(IoRequest::Op op, uint64_t offset, uint64_t length, uint64_t cookie) {
  return {op, offset, length, {}, cookie};
}

// Sets $TMPDIR for one test and puts back what was there.
class ScopedTmpdir {
 public:
  explicit ScopedTmpdir(const std::string& dir) {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    ::setenv("TMPDIR", dir.c_str(), 1);
  }
  ~ScopedTmpdir() {
    if (old_) {
      ::setenv("TMPDIR", old_->c_str(), 1);
    } else {
      ::unsetenv("TMPDIR");
    }
  }
  ScopedTmpdir(const ScopedTmpdir&) = delete;
  ScopedTmpdir& operator=(const ScopedTmpdir&) = delete;

 private:
  std::optional<std::string> old_;
};

// A base image of kDiskSize patterned bytes in a temp dir that is also $TMPDIR, so a file overlay
// lands (unlinked) next to it.
class SnapshotBase {
 public:
  SnapshotBase()
      : path_(dir_.file("base.img")), bytes_(pattern(kDiskSize, 1)), tmpdir_(dir_.path()) {
    std::ofstream(path_, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes_.data()),
               static_cast<std::streamsize>(kDiskSize));
    stat_ = stat_base();
  }

  const std::string& path() const { return path_; }
  const std::string& dir() const { return dir_.path(); }
  // The base's bytes: what every sector reads until the guest writes it.
  const std::vector<uint8_t>& bytes() const { return bytes_; }

  // The base file as on disk: bytes, size and modification time as when it was made.
  void expect_unchanged() const {
    std::ifstream file(path_, std::ios::binary);
    const std::vector<uint8_t> now((std::istreambuf_iterator<char>(file)),
                                   std::istreambuf_iterator<char>());
    EXPECT_TRUE(now == bytes_) << "the base image's bytes changed";
    const struct stat st = stat_base();
    EXPECT_EQ(st.st_size, stat_.st_size);
    EXPECT_EQ(st.st_mtim.tv_sec, stat_.st_mtim.tv_sec);
    EXPECT_EQ(st.st_mtim.tv_nsec, stat_.st_mtim.tv_nsec);
  }

  // Every name in the dir: the overlay file must have none.
  std::set<std::string> dir_entries() const {
    std::set<std::string> names;
    if (DIR* d = ::opendir(dir_.path().c_str())) {
      while (const dirent* entry = ::readdir(d)) {
        const std::string name = entry->d_name;
        if (name != "." && name != "..") names.insert(name);
      }
      ::closedir(d);
    }
    return names;
  }

 private:
  struct stat stat_base() const {
    struct stat st {};
    EXPECT_EQ(::stat(path_.c_str(), &st), 0);
    return st;
  }

  testing::TempDir dir_;
  std::string path_;
  std::vector<uint8_t> bytes_;
  ScopedTmpdir tmpdir_;
  struct stat stat_ {};
};

struct Setup {
  Engine engine;
  Overlay overlay;
};

std::string setup_name(const Setup& setup) {
  return std::string(setup.engine == Engine::kIoUring ? "IoUring" : "ThreadPool") +
         (setup.overlay == Overlay::kMemory ? "Memory" : "TempFile");
}

void PrintTo(const Setup& setup, std::ostream* out) {
  *out << setup_name(setup);
}

class DiskImageSnapshotTest : public ::testing::TestWithParam<Setup> {
 protected:
  void SetUp() override {
    image_.emplace(DiskImage::open(base_.path(), false, GetParam().overlay));
    io_ = create_io(kDepth);
  }

  // An engine of the test's kind; nullptr (and a reason) when this host refuses io_uring.
  std::unique_ptr<AsyncIo> create_io(unsigned depth) {
    try {
      return image_->create_io(depth, GetParam().engine, {});
    } catch (const Error& e) {
      if (GetParam().engine != Engine::kIoUring) throw;
      skip_reason_ = std::string("io_uring unavailable here: ") + e.what();
      return nullptr;
    }
  }

  std::vector<uint8_t> read(uint64_t offset, uint64_t length) {
    std::vector<uint8_t> bytes(length);
    EXPECT_THAT(run(*io_, {read_request(offset, {buffer(bytes)}, 1)}),
                ElementsAre(Pair(1, static_cast<int64_t>(length))));
    return bytes;
  }

  void write(uint64_t offset, std::vector<uint8_t> bytes) {
    EXPECT_THAT(run(*io_, {write_request(offset, {buffer(bytes)}, 1)}),
                ElementsAre(Pair(1, static_cast<int64_t>(bytes.size()))));
    std::copy(bytes.begin(), bytes.end(), expected_.begin() + static_cast<ptrdiff_t>(offset));
  }

  // Writes each odd sector of [first, first + count) with its own pattern.
  void write_odd_sectors(uint64_t first, uint64_t count) {
    for (uint64_t sector = first | 1; sector < first + count; sector += 2) {
      write(sector * kSector, pattern(kSector, 1000 + static_cast<uint32_t>(sector)));
    }
  }

  // Four reads of 64 alternately written sectors (64 parts each) into `reads`, on a new engine with
  // room for four requests, and so eight parts: most parts must wait for room.
  std::vector<IoRequest> reads_with_more_parts_than_room(std::vector<std::vector<uint8_t>>& reads) {
    write_odd_sectors(0, 256);
    io_ = create_io(4);
    reads.assign(4, std::vector<uint8_t>(64 * kSector));
    std::vector<IoRequest> requests;
    for (uint64_t i = 0; i < reads.size(); ++i) {
      requests.push_back(read_request(i * 64 * kSector, {buffer(reads[i])}, i));
    }
    return requests;
  }

  void expect_disk_reads_as_expected() {
    EXPECT_TRUE(read(0, kDiskSize) == expected_) << "the guest's view of the disk";
  }

  SnapshotBase base_;
  std::optional<DiskImage> image_;
  std::string skip_reason_;
  std::unique_ptr<AsyncIo> io_;
  // What the guest should read: the base, then what each test writes.
  std::vector<uint8_t> expected_ = base_.bytes();
};

#define SKIP_IF_UNAVAILABLE() \
  if (!io_) GTEST_SKIP() << skip_reason_

TEST_P(DiskImageSnapshotTest, ReadsComeFromTheBaseUntilWritten) {
  SKIP_IF_UNAVAILABLE();
  EXPECT_FALSE(image_->read_only());
  EXPECT_EQ(image_->size(), kDiskSize);
  EXPECT_EQ(image_->describe(),
            "snapshot overlay in " +
                (GetParam().overlay == Overlay::kMemory ? std::string("memory") : base_.dir()));
  EXPECT_THAT(io_->name(), ::testing::EndsWith(" with a snapshot overlay"));
  expect_disk_reads_as_expected();
  // A file overlay is in the dir but has no name there.
  EXPECT_THAT(base_.dir_entries(), ElementsAre("base.img"));
}

TEST_P(DiskImageSnapshotTest, WrittenSectorsReadBackFromTheOverlayAndTheBaseNeverChanges) {
  SKIP_IF_UNAVAILABLE();
  write(8 * kSector, pattern(4096, 2));
  write(100 * kSector, pattern(kSector, 3));
  write(kDiskSize - kSector, pattern(kSector, 4));
  write(8 * kSector, pattern(kSector, 5));  // over a written sector
  EXPECT_EQ(read(100 * kSector, kSector), pattern(kSector, 3));
  expect_disk_reads_as_expected();
  base_.expect_unchanged();
  EXPECT_THAT(base_.dir_entries(), ElementsAre("base.img"));
  io_.reset();
  image_.reset();
  base_.expect_unchanged();
}

// A machine snapshot carries the overlay: its written runs and their bytes, saved to a file and
// loaded into another open's fresh overlay, which then reads exactly as this one does.
TEST_P(DiskImageSnapshotTest, TheOverlaySavedAndLoadedIntoAnotherOpenReadsTheSame) {
  SKIP_IF_UNAVAILABLE();
  EXPECT_TRUE(image_->has_overlay());
  EXPECT_TRUE(image_->overlay_runs().empty());
  write(8 * kSector, pattern(4096, 2));
  write(100 * kSector, pattern(kSector, 3));
  write(kDiskSize - kSector, pattern(kSector, 4));
  const std::vector<SectorRun> runs = image_->overlay_runs();
  const std::vector<SectorRun> want{{8, 8}, {100, 1}, {kDiskSize / kSector - 1, 1}};
  EXPECT_EQ(runs, want);
  const std::string saved = base_.dir() + "/overlay";
  UniqueFd out(::open(saved.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(out);
  image_->save_overlay(out.get(), runs, "saved overlay");
  struct stat st {};
  ASSERT_EQ(::fstat(out.get(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kDiskSize);

  io_.reset();
  image_.emplace(DiskImage::open(base_.path(), false, GetParam().overlay));
  image_->load_overlay(out.get(), runs, "saved overlay");
  io_ = create_io(kDepth);
  EXPECT_EQ(image_->overlay_runs(), want);
  expect_disk_reads_as_expected();
  base_.expect_unchanged();

  // Runs outside the disk are refused before anything is copied.
  EXPECT_THROW(image_->load_overlay(out.get(), {{kDiskSize / kSector, 1}}, "bad"), Error);
  EXPECT_THROW(image_->load_overlay(out.get(), {{0, 0}}, "bad"), Error);
  EXPECT_THROW(image_->load_overlay(out.get(), {{1, ~uint64_t{0}}}, "bad"), Error);
  ::unlink(saved.c_str());
}

TEST_P(DiskImageSnapshotTest, AReadSpanningWrittenAndUnwrittenRunsComesBackInOrder) {
  SKIP_IF_UNAVAILABLE();
  write_odd_sectors(0, 64);
  write(70 * kSector, pattern(3 * kSector, 6));
  // Buffers that end mid-sector, so parts start and end inside them.
  std::vector<uint8_t> a(700), b(3000), c(80 * kSector - 3700);
  EXPECT_THAT(run(*io_, {read_request(0, {buffer(a), buffer(b), buffer(c)}, 1)}),
              ElementsAre(Pair(1, static_cast<int64_t>(80 * kSector))));
  a.insert(a.end(), b.begin(), b.end());
  a.insert(a.end(), c.begin(), c.end());
  EXPECT_TRUE(std::equal(a.begin(), a.end(), expected_.begin()));
  // A read that starts and ends mid-sector.
  const std::vector<uint8_t> middle = read(100, 2000);
  EXPECT_TRUE(std::equal(middle.begin(), middle.end(), expected_.begin() + 100));
}

TEST_P(DiskImageSnapshotTest, DiscardAndWriteZeroesReadBackAsZeros) {
  SKIP_IF_UNAVAILABLE();
  write(0, pattern(16 * kSector, 7));
  // Half over written sectors, half over the base's.
  EXPECT_THAT(run(*io_, {range_request(IoRequest::Op::kPunchHole, 8 * kSector, 16 * kSector, 1)}),
              ElementsAre(Pair(1, 0)));
  std::fill_n(expected_.begin() + 8 * kSector, 16 * kSector, 0);
  const int64_t zeroed =
      run(*io_, {range_request(IoRequest::Op::kZeroRange, 40 * kSector, 8 * kSector, 2)}).at(2);
  // Where the file system cannot zero a range (tmpfs, memory), nothing changed, as with a plain
  // image there (the virtio-blk device then writes zeros).
  if (zeroed != -EOPNOTSUPP) {
    EXPECT_EQ(zeroed, 0);
    std::fill_n(expected_.begin() + 40 * kSector, 8 * kSector, 0);
  }
  expect_disk_reads_as_expected();
  base_.expect_unchanged();
}

TEST_P(DiskImageSnapshotTest, FlushCompletes) {
  SKIP_IF_UNAVAILABLE();
  write(0, pattern(kSector, 8));
  EXPECT_THAT(run(*io_, {range_request(IoRequest::Op::kFlush, 0, 0, 1)}), ElementsAre(Pair(1, 0)));
  base_.expect_unchanged();
}

TEST_P(DiskImageSnapshotTest, ModifyingRequestsMustCoverWholeSectorsOfTheDisk) {
  SKIP_IF_UNAVAILABLE();
  std::vector<uint8_t> bytes(kSector, 0xee);
  std::vector<uint8_t> odd(700, 0xee);
  EXPECT_THAT(
      run(*io_, {write_request(100, {buffer(bytes)}, 1), write_request(0, {buffer(odd)}, 2),
                 write_request(kDiskSize, {buffer(bytes)}, 3),
                 range_request(IoRequest::Op::kPunchHole, kDiskSize - kSector, 2 * kSector, 4)}),
      ElementsAre(Pair(1, -EINVAL), Pair(2, -EINVAL), Pair(3, -EINVAL), Pair(4, -EINVAL)));
  // Reads past the end are short, as on the image itself.
  std::vector<uint8_t> tail(2 * kSector);
  EXPECT_THAT(run(*io_, {read_request(kDiskSize - kSector, {buffer(tail)}, 5),
                         read_request(kDiskSize, {buffer(tail)}, 6)}),
              ElementsAre(Pair(5, static_cast<int64_t>(kSector)), Pair(6, 0)));
  expect_disk_reads_as_expected();
}

// A request may take more parts than the engine has room for: they wait their turn.
TEST_P(DiskImageSnapshotTest, ReadsWithMorePartsThanTheEngineHasRoomFor) {
  SKIP_IF_UNAVAILABLE();
  std::vector<std::vector<uint8_t>> reads;
  const auto results = run(*io_, reads_with_more_parts_than_room(reads));
  for (uint64_t i = 0; i < reads.size(); ++i) {
    EXPECT_EQ(results.at(i), static_cast<int64_t>(64 * kSector));
    EXPECT_TRUE(std::equal(reads[i].begin(), reads[i].end(),
                           expected_.begin() + static_cast<ptrdiff_t>(i * 64 * kSector)))
        << "read " << i;
  }
  // A buffer each: reads in flight together must not write the same memory (TSan says so). The
  // fifth, refused, is never under way.
  EXPECT_THROW(
      {
        for (uint64_t i = 0; i < 5; ++i) {
          io_->submit(read_request(0, {buffer(reads[i % reads.size()])}, i));
        }
      },
      Error);
  EXPECT_EQ(io_->in_flight(), 4u);
  io_->wait_all([](const IoCompletion&) {});
}

// A device reset under load: each request completes exactly once, done or -ECANCELED; a
// cancelled write left the guest's view alone, a finished one is read back; the engine works on.
TEST_P(DiskImageSnapshotTest, CancelAllCompletesEachRequestOnceCancelledOrDone) {
  SKIP_IF_UNAVAILABLE();
  write_odd_sectors(0, 512);
  constexpr uint64_t kBlock = 8 * kSector;
  std::vector<std::vector<uint8_t>> data(kDepth);
  for (unsigned i = 0; i < kDepth; ++i) {
    data[i] = pattern(kBlock, 400 + i);
    // Even cookies write a block, odd ones read one that spans 8 runs.
    io_->submit(i % 2 == 0 ? write_request(i * kBlock, {buffer(data[i])}, i)
                           : read_request(i * kBlock, {buffer(data[i])}, i));
    if (i == kDepth / 2) io_->flush_submissions();
  }
  io_->cancel_all();
  const std::map<uint64_t, int64_t> results = reap_all(*io_, kDepth);
  ASSERT_EQ(results.size(), kDepth);
  size_t cancelled = 0;
  for (unsigned i = 0; i < kDepth; ++i) {
    const int64_t result = results.at(i);
    ASSERT_TRUE(result == static_cast<int64_t>(kBlock) || result == -ECANCELED)
        << i << ": " << result;
    cancelled += result == -ECANCELED ? 1 : 0;
    if (i % 2 == 0 && result == static_cast<int64_t>(kBlock)) {
      std::copy(data[i].begin(), data[i].end(), expected_.begin() + i * kBlock);
    }
  }
  // Writes take a part each and reads eight: the later requests' parts were still waiting for
  // room in the engine, and were given up.
  EXPECT_GT(cancelled, 0u);
  expect_disk_reads_as_expected();
}

TEST_P(DiskImageSnapshotTest, WaitAllAndTheDestructorFinishEverySubmittedRequest) {
  SKIP_IF_UNAVAILABLE();
  std::vector<std::vector<uint8_t>> reads;
  for (IoRequest& read : reads_with_more_parts_than_room(reads)) io_->submit(std::move(read));
  std::set<uint64_t> cookies;
  io_->wait_all([&](const IoCompletion& c) {
    EXPECT_EQ(c.result, static_cast<int64_t>(64 * kSector));
    EXPECT_TRUE(cookies.insert(c.cookie).second) << "cookie " << c.cookie << " twice";
  });
  EXPECT_THAT(cookies, ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(io_->in_flight(), 0u);
  EXPECT_TRUE(std::equal(reads[3].begin(), reads[3].end(), expected_.begin() + 192 * kSector));

  std::vector<uint8_t> data = pattern(64 * kSector, 9);
  io_->submit(write_request(0, {buffer(data)}, 7));
  io_.reset();  // waits for the write
  io_ = create_io(kDepth);
  std::copy(data.begin(), data.end(), expected_.begin());
  expect_disk_reads_as_expected();
}

TEST_P(DiskImageSnapshotTest, EachOpenHasAnOverlayOfItsOwn) {
  SKIP_IF_UNAVAILABLE();
  write(0, pattern(kSector, 10));
  const DiskImage other = DiskImage::open(base_.path(), false, GetParam().overlay);
  std::unique_ptr<AsyncIo> other_io = other.create_io(kDepth, GetParam().engine, {});
  std::vector<uint8_t> bytes(kSector);
  EXPECT_THAT(run(*other_io, {read_request(0, {buffer(bytes)}, 1)}), ElementsAre(Pair(1, 512)));
  EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), base_.bytes().begin()));
}

INSTANTIATE_TEST_SUITE_P(EnginesAndOverlays, DiskImageSnapshotTest,
                         ::testing::Values(Setup{Engine::kIoUring, Overlay::kTempFile},
                                           Setup{Engine::kIoUring, Overlay::kMemory},
                                           Setup{Engine::kThreadPool, Overlay::kTempFile},
                                           Setup{Engine::kThreadPool, Overlay::kMemory}),
                         [](const ::testing::TestParamInfo<Setup>& info) {
                           return setup_name(info.param);
                         });

// The vmm::Error message DiskImage::open throws, or nullopt if it opens.
std::optional<std::string> open_error(const std::string& path, bool read_only, Overlay overlay) {
  try {
    DiskImage::open(path, read_only, overlay);
  } catch (const Error& e) {
    return e.what();
  }
  return std::nullopt;
}

TEST(DiskImageOpenTest, SnapshotsShareTheBaseAndExcludeAWriter) {
  const SnapshotBase base;
  {
    const DiskImage first = DiskImage::open(base.path(), false, Overlay::kTempFile);
    const DiskImage second = DiskImage::open(base.path(), false, Overlay::kMemory);
    const DiskImage third = DiskImage::open(base.path(), false, Overlay::kTempFile);
    EXPECT_EQ(open_error(base.path(), false, Overlay::kNone),
              base.path() + kInUse + "forbids writing it (readonly=on would share it)");
  }
  const DiskImage writer = DiskImage::open(base.path(), false, Overlay::kNone);
  EXPECT_EQ(writer.describe(), "");
  EXPECT_EQ(open_error(base.path(), false, Overlay::kTempFile), base.path() + kInUse + "writes it");
  EXPECT_EQ(open_error(base.path(), false, Overlay::kMemory), base.path() + kInUse + "writes it");
}

TEST(DiskImageOpenTest, AMissingTmpdirIsOneLineNamingIt) {
  const SnapshotBase base;
  const std::string missing = base.dir() + "/missing";
  const ScopedTmpdir tmpdir(missing);
  EXPECT_EQ(
      open_error(base.path(), false, Overlay::kTempFile),
      base.path() + ": snapshot overlay in $TMPDIR " + missing + ": No such file or directory");
  // Neither a memory overlay nor a read-only disk needs it.
  EXPECT_EQ(DiskImage::open(base.path(), false, Overlay::kMemory).describe(),
            "snapshot overlay in memory");
  EXPECT_EQ(DiskImage::open(base.path(), true, Overlay::kTempFile).describe(), "read-only");
}

TEST(DiskImageOpenTest, ATmpdirThatIsNotWritableIsOneLineNamingIt) {
  const SnapshotBase base;
  const std::string locked = base.dir() + "/locked";
  ASSERT_EQ(::mkdir(locked.c_str(), 0555), 0);
  ASSERT_EQ(::chmod(base.dir().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(base.path().c_str(), 0644), 0);
  const ScopedTmpdir tmpdir(locked);
  const std::string expected =
      base.path() + ": snapshot overlay in $TMPDIR " + locked + ": Permission denied";
  // Root ignores directory modes, so the attempt runs in a (forked) child that drops to an
  // unprivileged user.
  EXPECT_EXIT(
      {
        if (::geteuid() == 0 && ::setresuid(65534, 65534, 65534) != 0) _exit(2);
        const auto error = open_error(base.path(), false, Overlay::kTempFile);
        std::fprintf(stderr, "%s\n", error.value_or("opened").c_str());
        _exit(error == expected ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "Permission denied");
}

TEST(DiskImageOpenTest, AReadOnlySnapshotIsTheReadOnlyImage) {
  const SnapshotBase base;
  const DiskImage image = DiskImage::open(base.path(), true, Overlay::kTempFile);
  EXPECT_TRUE(image.read_only());
  std::unique_ptr<AsyncIo> io = image.create_io(4, Engine::kThreadPool, {});
  EXPECT_EQ(io->name(), "thread pool");
  std::vector<uint8_t> bytes(kSector);
  EXPECT_THAT(run(*io, {write_request(0, {buffer(bytes)}, 1)}), ElementsAre(Pair(1, -EBADF)));
  base.expect_unchanged();
}

}  // namespace
}  // namespace vmm::devices
