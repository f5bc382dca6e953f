#include "vmm/machine/line_framer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vmm {
namespace {

// Feeds `chunks` one by one; the lines it framed, in order.
struct Framed {
  std::vector<std::string> lines;
  bool within_bound = true;
};

Framed frame(LineFramer& framer, const std::vector<std::string>& chunks) {
  Framed framed;
  for (const std::string& chunk : chunks) {
    framed.within_bound =
        framer.feed(chunk, [&](std::string_view line) { framed.lines.emplace_back(line); });
  }
  return framed;
}

TEST(LineFramer, SplitsLinesAcrossAndWithinChunks) {
  LineFramer framer(100);
  const Framed framed = frame(framer, {"one\ntw", "", "o\n\nthr", "ee", "\nfour"});
  EXPECT_TRUE(framed.within_bound);
  EXPECT_EQ(framed.lines, (std::vector<std::string>{"one", "two", "", "three"}));
  EXPECT_EQ(framer.buffered(), 4u);  // "four", waiting for its '\n'
}

TEST(LineFramer, ALineOfExactlyTheBoundIsALine) {
  LineFramer framer(8);
  const Framed framed = frame(framer, {"1234", "5678", "\n12345678\n"});
  EXPECT_TRUE(framed.within_bound);
  EXPECT_EQ(framed.lines, (std::vector<std::string>{"12345678", "12345678"}));
}

TEST(LineFramer, APeerThatNeverSendsANewlineIsCutOffAtTheBound) {
  LineFramer framer(8);
  EXPECT_TRUE(framer.feed("12345678", [](std::string_view) { FAIL(); }));
  EXPECT_EQ(framer.buffered(), 8u);
  EXPECT_FALSE(framer.feed("9", [](std::string_view) { FAIL(); }));
  EXPECT_TRUE(framer.overflowed());
  EXPECT_EQ(framer.buffered(), 0u);  // nothing more is held for it
}

TEST(LineFramer, LinesBeforeAnOversizedOneAreFramedAndNothingAfterIt) {
  LineFramer framer(4);
  const Framed framed = frame(framer, {"ok\n123456789\nlater\n", "more\n"});
  EXPECT_FALSE(framed.within_bound);
  EXPECT_EQ(framed.lines, (std::vector<std::string>{"ok"}));
  EXPECT_TRUE(framer.overflowed());
}

TEST(LineFramer, AFinishedLineOverTheBoundIsRefusedToo) {
  LineFramer framer(4);
  std::vector<std::string> lines;
  EXPECT_FALSE(framer.feed("12345\n", [&](std::string_view line) { lines.emplace_back(line); }));
  EXPECT_TRUE(lines.empty());
}

}  // namespace
}  // namespace vmm
