#include "base/memory/guest_memory.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

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
}

}  // namespace
}  // namespace vmm
