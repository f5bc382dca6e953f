#include "devices/legacy/pvpanic.hpp"

#include <gtest/gtest.h>

#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

class PvPanicTest : public ::testing::Test {
 protected:
  void out(uint8_t value) { port.write(0, {&value, 1}); }

  testing::FakePlatformEvents events;
  PvPanic port{events};
};

TEST_F(PvPanicTest, AdvertisesPanickedAndCrashLoaded) {
  uint8_t value = 0;
  port.read(0, {&value, 1});
  EXPECT_EQ(value, 0x03);
}

TEST_F(PvPanicTest, PanickedRequestsPanic) {
  out(0x01);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kPanic);
}

TEST_F(PvPanicTest, CrashLoadedOnlyLogs) {
  out(0x02);
  EXPECT_TRUE(events.requests.empty());
  out(0x03);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kPanic);
}

TEST_F(PvPanicTest, HostileAccessesDoNotCrash) {
  testing::hammer(port, PvPanic::kPortCount);
  for (const auto& request : events.requests) EXPECT_EQ(request.first, GuestRequest::kPanic);
  uint8_t wide[4] = {};
  port.read(0, wide);
  EXPECT_EQ(wide[0], 0x03);
  EXPECT_EQ(wide[1], 0xff);  // past the single port
}

}  // namespace
}  // namespace vmm::devices
