#include "devices/legacy/acpi_power.hpp"

#include <gtest/gtest.h>

#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

constexpr uint64_t kSleepControl = 0;
constexpr uint64_t kSleepStatus = 1;
constexpr uint8_t kSleepEnable = 0x20;

uint8_t sleep_type(int type) {
  return static_cast<uint8_t>(type << 2);
}

class AcpiPowerTest : public ::testing::Test {
 protected:
  void out(uint64_t port, uint8_t value) { testing::outb(power, port, value); }

  testing::FakePlatformEvents events;
  AcpiPower power{events};
};

TEST_F(AcpiPowerTest, S5WithSleepEnablePowersOff) {
  out(kSleepControl, sleep_type(5) | kSleepEnable);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kPowerOff);
}

TEST_F(AcpiPowerTest, OtherBitsAroundS5DoNotMatter) {
  out(kSleepControl, sleep_type(5) | kSleepEnable | 0x83);
  EXPECT_EQ(events.requests.size(), 1u);
}

TEST_F(AcpiPowerTest, OnlyS5WithSleepEnablePowersOff) {
  out(kSleepControl, sleep_type(5));  // SLP_TYP written first, without SLP_EN
  for (int type = 0; type < 8; ++type) {
    if (type != 5) out(kSleepControl, sleep_type(type) | kSleepEnable);
  }
  out(kSleepStatus, sleep_type(5) | kSleepEnable);  // the wrong register
  EXPECT_TRUE(events.requests.empty());
}

TEST_F(AcpiPowerTest, RegistersReadZero) {
  out(kSleepControl, sleep_type(3) | kSleepEnable);
  uint8_t data[2] = {0xaa, 0xaa};
  power.read(kSleepControl, data);
  EXPECT_EQ(data[0], 0);
  EXPECT_EQ(data[1], 0);
}

TEST_F(AcpiPowerTest, HostileAccessesDoNotCrash) {
  testing::hammer(power, AcpiPower::kPortCount);
  for (const auto& request : events.requests) EXPECT_EQ(request.first, GuestRequest::kPowerOff);
  uint8_t status = 0xaa;
  power.read(kSleepStatus, {&status, 1});
  EXPECT_EQ(status, 0);
}

}  // namespace
}  // namespace vmm::devices
