#include "base/util/mac_address.hpp"

#include <gtest/gtest.h>

namespace vmm {
namespace {

TEST(MacAddress, ParsesAndFormats) {
  const auto mac = parse_mac("52:54:00:AB:cd:0F");
  ASSERT_TRUE(mac);
  EXPECT_EQ(*mac, (MacAddress{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}));
  EXPECT_EQ(format_mac(*mac), "52:54:00:ab:cd:0f");
}

TEST(MacAddress, RefusesMalformed) {
  for (const char* text : {"", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:11", "52-54-00-ab-cd-0f",
                           "52:54:00:ab:cd:0g", "5:254:00:ab:cd:0f", "52:54:00:ab:cd:0f "}) {
    EXPECT_FALSE(parse_mac(text)) << text;
  }
}

TEST(MacAddress, StableMacIsLocallyAdministeredUnicastAndDependsOnTheSeed) {
  const MacAddress a = stable_mac("tap0");
  EXPECT_EQ(a, stable_mac("tap0"));
  EXPECT_NE(a, stable_mac("tap1"));
  EXPECT_EQ(a[0] & 0x3, 0x2) << format_mac(a);
}

}  // namespace
}  // namespace vmm
