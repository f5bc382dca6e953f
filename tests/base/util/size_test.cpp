#include "base/util/size.hpp"

#include <gtest/gtest.h>

namespace vmm {
namespace {

TEST(ParseSize, UnitsAndSpellings) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("512M"), 512 * MiB);
  EXPECT_EQ(parse_size("512m"), 512 * MiB);
  EXPECT_EQ(parse_size("2G"), 2 * GiB);
  EXPECT_EQ(parse_size("2GiB"), 2 * GiB);
  EXPECT_EQ(parse_size("2GB"), 2 * GiB);
  EXPECT_EQ(parse_size("64K"), 64 * KiB);
  EXPECT_EQ(parse_size("1T"), 1024 * GiB);
}

TEST(ParseSize, Garbage) {
  for (const char* bad : {"", "M", "-1M", "12Q", "1.5G", "1GG", " 1G", "1G ",
                          "99999999999999999999", "17179869184G"}) {
    EXPECT_FALSE(parse_size(bad)) << bad;
  }
}

}  // namespace
}  // namespace vmm
