#include "vmm/machine/command_control.hpp"

#include <gtest/gtest.h>

#include <string>

namespace vmm {
namespace {

std::optional<int> feed(CommandControl& control, const std::string& text) {
  return control.feed(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

TEST(CommandControlTest, ExitLineGivesTheStatus) {
  CommandControl control;
  EXPECT_EQ(feed(control, "exit 7\n"), 7);
}

TEST(CommandControlTest, LineSplitAcrossFeedsCountsWhenWhole) {
  CommandControl control;
  EXPECT_EQ(feed(control, "ex"), std::nullopt);
  EXPECT_EQ(feed(control, "it 25"), std::nullopt);
  EXPECT_EQ(feed(control, "5\n"), 255);
}

TEST(CommandControlTest, TheFirstStatusIsTheOne) {
  CommandControl control;
  EXPECT_EQ(feed(control, "exit 0\nexit 1\n"), 0);
  EXPECT_EQ(feed(control, "exit 2\n"), std::nullopt);
}

TEST(CommandControlTest, JunkIsDropped) {
  CommandControl control;
  for (const char* junk : {"exit\n", "exit \n", "exit 256\n", "exit -1\n", "exit 1x\n", "exit  1\n",
                           "EXIT 1\n", "signal 2\n", "\n", "exit 00000000001 \n"}) {
    EXPECT_EQ(feed(control, junk), std::nullopt) << junk;
  }
  EXPECT_EQ(feed(control, "exit 3\n"), 3);
}

TEST(CommandControlTest, OverlongLineIsDroppedWhole) {
  CommandControl control;
  // Its tail would read "exit 9" if the line were cut at the limit instead of dropped.
  EXPECT_EQ(feed(control, std::string(CommandControl::kMaxLineBytes, 'x') + "exit 9\n"),
            std::nullopt);
  EXPECT_EQ(feed(control, "exit 4\n"), 4);
}

TEST(CommandControlTest, SignalLine) {
  EXPECT_EQ(CommandControl::signal_line(2), "signal 2\n");
}

}  // namespace
}  // namespace vmm
