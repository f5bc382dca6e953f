#include "devices/backends/overlay_io.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace vmm::devices {
namespace {

TEST(SectorBitmapTest, StartsClearAndSetsExactlyTheRangeAcrossWords) {
  SectorBitmap bitmap(200);
  EXPECT_EQ(bitmap.sectors(), 200u);
  bitmap.set(60, 80);  // the end of one word, a whole word, the start of a third
  for (uint64_t sector = 0; sector < 200; ++sector) {
    EXPECT_EQ(bitmap.test(sector), sector >= 60 && sector < 140) << sector;
  }
  bitmap.set(199, 1);
  EXPECT_TRUE(bitmap.test(199));
  EXPECT_FALSE(bitmap.test(198));
}

TEST(SectorBitmapTest, RunEndFindsTheFirstSectorThatDiffers) {
  SectorBitmap bitmap(300);
  bitmap.set(10, 5);
  bitmap.set(64, 128);  // two whole words
  EXPECT_EQ(bitmap.run_end(0, 300), 10u);
  EXPECT_EQ(bitmap.run_end(10, 300), 15u);
  EXPECT_EQ(bitmap.run_end(12, 300), 15u);
  EXPECT_EQ(bitmap.run_end(15, 300), 64u);
  EXPECT_EQ(bitmap.run_end(64, 300), 192u);
  EXPECT_EQ(bitmap.run_end(100, 300), 192u);
  EXPECT_EQ(bitmap.run_end(192, 300), 300u);
  // The limit cuts a run short.
  EXPECT_EQ(bitmap.run_end(0, 5), 5u);
  EXPECT_EQ(bitmap.run_end(64, 100), 100u);
  EXPECT_EQ(bitmap.run_end(299, 300), 300u);
}

TEST(SectorBitmapTest, AHugeDiskIsReservedNotFilled) {
  // 4 TiB of sectors: 1 GiB of bitmap, reserved, of which one page is touched.
  const uint64_t sectors = uint64_t{1} << 33;
  SectorBitmap bitmap(sectors);
  bitmap.set(sectors - 1, 1);
  EXPECT_TRUE(bitmap.test(sectors - 1));
  EXPECT_EQ(bitmap.run_end(sectors - 1000, sectors), sectors - 1);
  SectorBitmap empty(0);
  EXPECT_EQ(empty.sectors(), 0u);
}

}  // namespace
}  // namespace vmm::devices
