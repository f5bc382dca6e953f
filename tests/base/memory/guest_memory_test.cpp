#include "base/memory/guest_memory.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm {
namespace {

class GuestMemoryTest : public ::testing::Test {
 protected:
  std::vector<uint8_t> low = std::vector<uint8_t>(0x10000);
  std::vector<uint8_t> high = std::vector<uint8_t>(0x1000);
  GuestMemory memory = GuestMemory::from_regions(
      {{0, low.size(), low.data()}, {0x100000000, high.size(), high.data()}});
};

TEST_F(GuestMemoryTest, ReadsAndWritesInsideRegions) {
  EXPECT_TRUE(memory.write_obj<uint32_t>(0x100, 0xdeadbeef));
  EXPECT_EQ(memory.read_obj<uint32_t>(0x100), 0xdeadbeefu);
  EXPECT_EQ(low[0x100], 0xef);
  EXPECT_TRUE(memory.write_obj<uint64_t>(0x100000ff8, 42));
  EXPECT_EQ(memory.read_obj<uint64_t>(0x100000ff8), 42u);
}

TEST_F(GuestMemoryTest, RefusesOutOfRangeAndStraddlingAccesses) {
  EXPECT_FALSE(memory.read_obj<uint32_t>(0x10000));     // just past low RAM
  EXPECT_FALSE(memory.read_obj<uint32_t>(0xfffe));      // straddles the end
  EXPECT_FALSE(memory.read_obj<uint32_t>(0xffffffff));  // in the hole
  EXPECT_FALSE(memory.write_obj<uint64_t>(0x100000ffc, 1));
  std::array<uint8_t, 16> buffer{};
  EXPECT_FALSE(memory.read(0xfff8, buffer));
  EXPECT_TRUE(memory.read(0xfff0, buffer));
}

TEST_F(GuestMemoryTest, OverflowingAddressesAndLengthsAreRefused) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_FALSE(memory.slice(max, 1));
  EXPECT_FALSE(memory.slice(max - 3, 8));
  EXPECT_FALSE(memory.slice(0x10, max));
  EXPECT_FALSE(memory.slice(0x100000000, max - 0xff));
  EXPECT_TRUE(memory.slice(0x0, 0x10000));
  EXPECT_TRUE(memory.slice(0xffff, 0));
}

TEST_F(GuestMemoryTest, WriteOrThrowNamesThePayload) {
  std::array<uint8_t, 32> data{};
  try {
    memory.write_or_throw(0xfff0, data, "the initrd");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the initrd"), std::string::npos);
  }
}

TEST_F(GuestMemoryTest, CallerBuffersHaveNoFdAndBackToBackFileOffsets) {
  EXPECT_EQ(memory.fd(), -1);
  EXPECT_EQ(memory.regions()[0].file_offset, 0u);
  EXPECT_EQ(memory.regions()[1].file_offset, low.size());
}

TEST(GuestMemoryRegions, OverlapIsRefused) {
  std::vector<uint8_t> a(0x2000), b(0x2000);
  EXPECT_THROW(GuestMemory::from_regions({{0, a.size(), a.data()}, {0x1000, b.size(), b.data()}}),
               Error);
}

TEST(GuestMemoryAllocate, SmallGuestIsOneRegion) {
  auto memory = GuestMemory::allocate(64 << 20);
  ASSERT_EQ(memory.regions().size(), 1u);
  EXPECT_EQ(memory.ram_size(), 64u << 20);
  EXPECT_EQ(memory.low_ram_end(), 64u << 20);
}

TEST(GuestMemoryAllocate, LargeGuestSkipsTheMmioHole) {
  const uint64_t size = uint64_t{5} << 30;
  auto memory = GuestMemory::allocate(size);
  ASSERT_EQ(memory.regions().size(), 2u);
  EXPECT_EQ(memory.low_ram_end(), layout::kMmioHoleStart);
  EXPECT_EQ(memory.regions()[1].guest_base, layout::kHighRamStart);
  EXPECT_EQ(memory.ram_size(), size);
  EXPECT_FALSE(memory.contains(layout::kMmioHoleStart, 1));
  EXPECT_TRUE(memory.contains(layout::kHighRamStart + size - layout::kMmioHoleStart - 1, 1));
  EXPECT_EQ(memory.regions()[0].file_offset, 0u);
  EXPECT_EQ(memory.regions()[1].file_offset, layout::kMmioHoleStart);
}

TEST(GuestMemoryAllocate, RamIsHugePageAligned) {
  auto memory = GuestMemory::allocate(64 << 20);
  const auto host = reinterpret_cast<uintptr_t>(memory.regions()[0].host);
  EXPECT_EQ(host % (2 << 20), 0u);
  // Every byte is usable.
  EXPECT_TRUE(memory.write_obj<uint64_t>((64 << 20) - 8, 1));
}

TEST(GuestMemoryAllocate, RefusesUnalignedSizes) {
  EXPECT_THROW(GuestMemory::allocate(0), Error);
  EXPECT_THROW(GuestMemory::allocate(4097), Error);
  EXPECT_THROW(GuestMemory::allocate(uint64_t{1} << 60), Error);
}

uint64_t read_u64_at(int fd, uint64_t offset) {
  uint64_t value = 0;
  EXPECT_EQ(::pread(fd, &value, sizeof(value), static_cast<off_t>(offset)),
            static_cast<ssize_t>(sizeof(value)));
  return value;
}

TEST(GuestMemoryAllocate, RamIsOneMemfdInGuestOrder) {
  const uint64_t size = uint64_t{5} << 30;
  auto memory = GuestMemory::allocate(size, GuestMemory::Backing::kMemfd);
  ASSERT_GE(memory.fd(), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(memory.fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x1238, 0x1111));
  ASSERT_TRUE(memory.write_obj<uint64_t>(layout::kHighRamStart + 0x10, 0x2222));
  EXPECT_EQ(read_u64_at(memory.fd(), 0x1238), 0x1111u);
  EXPECT_EQ(read_u64_at(memory.fd(), layout::kMmioHoleStart + 0x10), 0x2222u);
  // Shared: a write to the memfd is what the guest reads.
  const uint64_t value = 0x3333;
  ASSERT_EQ(::pwrite(memory.fd(), &value, sizeof(value), 0x2000), 8);
  EXPECT_EQ(memory.read_obj<uint64_t>(0x2000), 0x3333u);
}

// A file for a memory snapshot, removed at the end of the test.
class MemoryFileTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRamSize = uint64_t{64} << 20;

  void TearDown() override {
    for (const std::string& path : paths_) ::unlink(path.c_str());
  }

  std::string new_path() {
    std::string path = ::testing::TempDir() + "/vmm-guest-memory-XXXXXX";
    const UniqueFd fd(::mkstemp(path.data()));
    if (!fd) throw std::runtime_error("mkstemp failed");
    paths_.push_back(path);
    return path;
  }

  std::string save(const GuestMemory& memory) {
    std::string path = new_path();
    const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    memory.save(fd.get(), path);
    return path;
  }

  static struct stat stat_of(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st;
  }

  static std::string error_of(const std::string& path, uint64_t ram_size) {
    try {
      GuestMemory::map_file(path, ram_size);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  // Every byte of the file at `path` is the guest's, in the memory file's layout.
  static void expect_file_holds(const std::string& path, const GuestMemory& memory) {
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd);
    std::vector<uint8_t> chunk(1 << 20);
    for (const GuestMemory::Region& region : memory.regions()) {
      for (uint64_t done = 0; done < region.size; done += chunk.size()) {
        ASSERT_EQ(::pread(fd.get(), chunk.data(), chunk.size(),
                          static_cast<off_t>(region.file_offset + done)),
                  static_cast<ssize_t>(chunk.size()));
        ASSERT_EQ(std::memcmp(chunk.data(), region.host + done, chunk.size()), 0)
            << "at guest address " << region.guest_base + done;
      }
    }
  }

 private:
  std::vector<std::string> paths_;
};

TEST_F(MemoryFileTest, SaveWritesOnlyTheNonZeroPages) {
  auto memory = GuestMemory::allocate(kRamSize, GuestMemory::Backing::kMemfd);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x1000, 0xfeed));
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x2000, 0xbeef));
  ASSERT_TRUE(memory.write_obj<uint64_t>(kRamSize - 8, 0xcafe));
  // Written with zeros, or read: pages the memfd holds that still belong in holes.
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x100000, 0));
  ASSERT_TRUE(memory.read_obj<uint64_t>(0x200000));

  struct stat ram_before {};
  ASSERT_EQ(::fstat(memory.fd(), &ram_before), 0);

  const std::string path = save(memory);
  const struct stat st = stat_of(path);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kRamSize);
  // Three pages of data (a filesystem may round each up to a larger block).
  EXPECT_LE(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{3} << 16);
  // Saving read no hole of the RAM (that would have given it pages).
  struct stat ram_after {};
  ASSERT_EQ(::fstat(memory.fd(), &ram_after), 0);
  EXPECT_EQ(ram_after.st_blocks, ram_before.st_blocks);
  expect_file_holds(path, memory);
}

// Where the host gives a memfd no huge pages, fresh RAM is anonymous memory (huge pages wherever
// THP is on): no fd, and a snapshot saves it by scanning, still sparse.
TEST_F(MemoryFileTest, AnonymousRamHasNoFdAndSavesSparse) {
  auto memory = GuestMemory::allocate(kRamSize, GuestMemory::Backing::kAnonymous);
  EXPECT_EQ(memory.fd(), -1);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(memory.regions().front().host) % (uint64_t{2} << 20), 0u);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x3000, 0x5eed));
  const std::string path = save(memory);
  EXPECT_LE(static_cast<uint64_t>(stat_of(path).st_blocks) * 512, uint64_t{1} << 16);
  expect_file_holds(path, memory);
  const bool memfd = GuestMemory::allocate(kRamSize).fd() >= 0;
  EXPECT_EQ(memfd, GuestMemory::host_has_shmem_huge_pages()) << "kAuto picks by the host";
}

TEST_F(MemoryFileTest, SaveEmptiesTheFileFirst) {
  const std::string path = new_path();
  {
    const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    const std::vector<uint8_t> junk(4096, 0xaa);
    ASSERT_EQ(::pwrite(fd.get(), junk.data(), junk.size(), 0x3000), 4096);
    ASSERT_EQ(::pwrite(fd.get(), junk.data(), junk.size(), kRamSize), 4096);
    GuestMemory::allocate(kRamSize).save(fd.get(), path);
  }
  EXPECT_EQ(static_cast<uint64_t>(stat_of(path).st_size), kRamSize);
  auto restored = GuestMemory::map_file(path, kRamSize);
  EXPECT_EQ(restored.read_obj<uint64_t>(0x3000), 0u);
}

TEST_F(MemoryFileTest, MapFileRoundTripsAcrossTheMmioHole) {
  const uint64_t size = layout::kMmioHoleStart + (uint64_t{4} << 20);
  auto memory = GuestMemory::allocate(size);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x1000, 1));
  ASSERT_TRUE(memory.write_obj<uint64_t>(layout::kMmioHoleStart - 8, 2));
  ASSERT_TRUE(memory.write_obj<uint64_t>(layout::kHighRamStart, 3));
  ASSERT_TRUE(memory.write_obj<uint64_t>(layout::kHighRamStart + (uint64_t{4} << 20) - 8, 4));
  const std::string path = save(memory);
  EXPECT_LE(static_cast<uint64_t>(stat_of(path).st_blocks) * 512, uint64_t{4} << 16);

  auto restored = GuestMemory::map_file(path, size);
  EXPECT_EQ(restored.fd(), -1);
  ASSERT_EQ(restored.regions().size(), 2u);
  EXPECT_EQ(restored.regions()[1].guest_base, layout::kHighRamStart);
  EXPECT_EQ(restored.regions()[1].file_offset, layout::kMmioHoleStart);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(restored.regions()[1].host) % (2 << 20), 0u);
  EXPECT_EQ(restored.ram_size(), size);
  EXPECT_FALSE(restored.contains(layout::kMmioHoleStart, 1));
  EXPECT_EQ(restored.read_obj<uint64_t>(0x1000), 1u);
  EXPECT_EQ(restored.read_obj<uint64_t>(layout::kMmioHoleStart - 8), 2u);
  EXPECT_EQ(restored.read_obj<uint64_t>(layout::kHighRamStart), 3u);
  EXPECT_EQ(restored.read_obj<uint64_t>(layout::kHighRamStart + (uint64_t{4} << 20) - 8), 4u);
  EXPECT_EQ(restored.read_obj<uint64_t>(0x2000), 0u);
}

TEST_F(MemoryFileTest, WritesAfterMapFileStayInThatGuest) {
  auto memory = GuestMemory::allocate(kRamSize);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x5000, 7));
  const std::string path = save(memory);

  auto first = GuestMemory::map_file(path, kRamSize);
  auto second = GuestMemory::map_file(path, kRamSize);
  ASSERT_TRUE(first.write_obj<uint64_t>(0x5000, 8));
  ASSERT_TRUE(first.write_obj<uint64_t>(0x9000, 9));
  EXPECT_EQ(second.read_obj<uint64_t>(0x5000), 7u);
  EXPECT_EQ(second.read_obj<uint64_t>(0x9000), 0u);
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(read_u64_at(fd.get(), 0x5000), 7u);
  EXPECT_EQ(read_u64_at(fd.get(), 0x9000), 0u);
}

TEST_F(MemoryFileTest, ARestoredGuestSavesByScanning) {
  auto memory = GuestMemory::allocate(kRamSize);
  ASSERT_TRUE(memory.write_obj<uint64_t>(0x5000, 7));
  auto restored = GuestMemory::map_file(save(memory), kRamSize);
  ASSERT_TRUE(restored.write_obj<uint64_t>(0x5000, 0));  // the page is all zeros again
  ASSERT_TRUE(restored.write_obj<uint64_t>(kRamSize - 4096, 10));

  const std::string path = save(restored);
  EXPECT_LE(static_cast<uint64_t>(stat_of(path).st_blocks) * 512, uint64_t{1} << 16);
  expect_file_holds(path, restored);
}

TEST_F(MemoryFileTest, SaveNeedsARegularFile) {
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(::pipe2(pipe_fds.data(), O_CLOEXEC), 0);
  const UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  auto memory = GuestMemory::allocate(kRamSize);
  EXPECT_THROW(memory.save(write_end.get(), "the pipe"), Error);
}

TEST_F(MemoryFileTest, BadMemoryFilesAreRefusedInOneLine) {
  const std::string path = new_path();
  ASSERT_EQ(::truncate(path.c_str(), kRamSize / 2), 0);
  EXPECT_EQ(error_of(path, kRamSize),
            path + ": truncated memory file (33554432 bytes, the snapshot's RAM is 67108864)");
  ASSERT_EQ(::truncate(path.c_str(), kRamSize + 4096), 0);
  const std::string longer = error_of(path, kRamSize);
  EXPECT_EQ(longer.rfind(path + ": ", 0), 0u) << longer;
  EXPECT_EQ(error_of(path + ".missing", kRamSize), path + ".missing: No such file or directory");
  EXPECT_NE(error_of(::testing::TempDir(), kRamSize).find("not a regular file"), std::string::npos);
  ASSERT_EQ(::truncate(path.c_str(), kRamSize), 0);
  EXPECT_EQ(error_of(path, kRamSize + 1).rfind(path + ": ", 0), 0u);
  EXPECT_EQ(error_of(path, uint64_t{1} << 62).rfind(path + ": ", 0), 0u);
  for (const std::string& message : {longer, error_of(path, kRamSize + 1)}) {
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace vmm
