#include "base/util/parse_number.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>

namespace vmm {
namespace {

TEST(ParseNumber, TakesTheWholeTextAsADecimalNumber) {
  EXPECT_EQ(parse_number<uint32_t>("0"), 0u);
  EXPECT_EQ(parse_number<uint32_t>("4294967295"), 4294967295u);
  EXPECT_EQ(parse_number<uint64_t>("007"), 7u);
  EXPECT_EQ(parse_number<int>("-3"), -3);
}

TEST(ParseNumber, RefusesAnythingButDigitsAndValuesTheTypeCantHold) {
  for (const char* text : {"", " 1", "1 ", "+1", "0x10", "1k", "1.5", "-", "-1"}) {
    EXPECT_EQ(parse_number<uint32_t>(text), std::nullopt) << '"' << text << '"';
  }
  EXPECT_EQ(parse_number<uint32_t>("4294967296"), std::nullopt);
  EXPECT_EQ(parse_number<int8_t>("128"), std::nullopt);
  EXPECT_EQ(parse_number<uint64_t>("18446744073709551616"), std::nullopt);
}

}  // namespace
}  // namespace vmm
