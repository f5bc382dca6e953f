#include "devices/legacy/debug_exit.hpp"

#include <gtest/gtest.h>

#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

class DebugExitTest : public ::testing::Test {
 protected:
  testing::FakePlatformEvents events;
  DebugExit port{events};
};

TEST_F(DebugExitTest, ByteWritePassesTheValueThrough) {
  const uint8_t value = 42;
  port.write(0, {&value, 1});
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kDebugExit);
  EXPECT_EQ(events.requests[0].second, 42);
}

TEST_F(DebugExitTest, ZeroAndFullRangeValues) {
  const uint8_t zero = 0, top = 0xff;
  port.write(0, {&zero, 1});
  port.write(0, {&top, 1});
  ASSERT_EQ(events.requests.size(), 2u);
  EXPECT_EQ(events.requests[0].second, 0);  // not QEMU's (0 << 1) | 1
  EXPECT_EQ(events.requests[1].second, 255);
}

TEST_F(DebugExitTest, WideWriteTakesTheLowByte) {
  const uint8_t dword[4] = {0x07, 0x01, 0x02, 0x03};  // outl 0x03020107 (little endian)
  port.write(0, dword);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].second, 7);
}

TEST_F(DebugExitTest, WritesPastTheFirstPortAreIgnored) {
  const uint8_t value = 1;
  port.write(2, {&value, 1});
  EXPECT_TRUE(events.requests.empty());
}

TEST_F(DebugExitTest, ReadsReturnAllOnes) {
  uint8_t data[4] = {};
  port.read(0, data);
  for (uint8_t byte : data) EXPECT_EQ(byte, 0xff);
}

TEST_F(DebugExitTest, HostileAccessesDoNotCrash) {
  testing::hammer(port, DebugExit::kPortCount);
  for (const auto& [request, code] : events.requests) {
    EXPECT_EQ(request, GuestRequest::kDebugExit);
    EXPECT_GE(code, 0);
    EXPECT_LE(code, 255);
  }
  EXPECT_FALSE(events.requests.empty());
}

}  // namespace
}  // namespace vmm::devices
