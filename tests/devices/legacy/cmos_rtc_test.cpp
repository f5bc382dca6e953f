#include "devices/legacy/cmos_rtc.hpp"

#include <gtest/gtest.h>

#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

constexpr uint64_t kIndex = 0;  // port 0x70
constexpr uint64_t kData = 1;   // port 0x71

time_t utc(int year, int month, int day, int hour, int minute, int second) {
  std::tm time{};
  time.tm_year = year - 1900;
  time.tm_mon = month - 1;
  time.tm_mday = day;
  time.tm_hour = hour;
  time.tm_min = minute;
  time.tm_sec = second;
  return timegm(&time);
}

class CmosRtcTest : public ::testing::Test {
 protected:
  uint8_t get(uint8_t index) {
    rtc.write(kIndex, std::span<const uint8_t>(&index, 1));
    uint8_t value = 0;
    rtc.read(kData, {&value, 1});
    return value;
  }
  void set(uint8_t index, uint8_t value) {
    rtc.write(kIndex, std::span<const uint8_t>(&index, 1));
    rtc.write(kData, std::span<const uint8_t>(&value, 1));
  }

  // A Thursday, leap day, in the afternoon.
  time_t now = utc(2024, 2, 29, 13, 45, 30);
  CmosRtc rtc{[this] { return now; }};
};

TEST_F(CmosRtcTest, ReadsTheHostClockInBcdByDefault) {
  EXPECT_EQ(get(0x00), 0x30);
  EXPECT_EQ(get(0x02), 0x45);
  EXPECT_EQ(get(0x04), 0x13);
  EXPECT_EQ(get(0x06), 0x05);  // Sunday = 1
  EXPECT_EQ(get(0x07), 0x29);
  EXPECT_EQ(get(0x08), 0x02);
  EXPECT_EQ(get(0x09), 0x24);
  EXPECT_EQ(get(0x32), 0x20);
}

TEST_F(CmosRtcTest, FollowsTheClockBetweenReads) {
  now += 61;
  EXPECT_EQ(get(0x00), 0x31);
  EXPECT_EQ(get(0x02), 0x46);
}

TEST_F(CmosRtcTest, BinaryMode) {
  set(0x0b, 0x06);  // binary, 24 hours
  EXPECT_EQ(get(0x00), 30);
  EXPECT_EQ(get(0x04), 13);
  EXPECT_EQ(get(0x07), 29);
  EXPECT_EQ(get(0x09), 24);
  EXPECT_EQ(get(0x32), 20);
}

TEST_F(CmosRtcTest, TwelveHourMode) {
  set(0x0b, 0x00);             // BCD, 12 hours
  EXPECT_EQ(get(0x04), 0x81);  // 1 PM
  now = utc(2024, 2, 29, 0, 5, 0);
  EXPECT_EQ(get(0x04), 0x12);  // 12 AM
  now = utc(2024, 2, 29, 12, 5, 0);
  EXPECT_EQ(get(0x04), 0x92);  // 12 PM
  now = utc(2024, 2, 29, 11, 5, 0);
  EXPECT_EQ(get(0x04), 0x11);
  set(0x0b, 0x04);  // binary, 12 hours
  EXPECT_EQ(get(0x04), 11);
}

TEST_F(CmosRtcTest, StatusRegisters) {
  EXPECT_EQ(get(0x0a), 0x26);  // divider and rate, update-in-progress clear
  EXPECT_EQ(get(0x0b), 0x02);
  EXPECT_EQ(get(0x0c), 0x00);
  EXPECT_EQ(get(0x0d), 0x80);  // valid RAM and time
  set(0x0d, 0x00);
  EXPECT_EQ(get(0x0d), 0x80);
  set(0x0a, 0xa6);  // UIP is read-only
  EXPECT_EQ(get(0x0a), 0x26);
}

// How Linux's mc146818_set_time writes the clock (hwclock -w).
TEST_F(CmosRtcTest, SettingTheClockWithSetHeldMovesItAndItKeepsRunning) {
  set(0x0b, 0x82);  // SET: freeze updates
  set(0x09, 0x30);
  set(0x08, 0x01);
  set(0x07, 0x15);
  set(0x04, 0x08);
  set(0x02, 0x00);
  set(0x00, 0x00);
  set(0x32, 0x20);
  now += 7;  // time passes while SET is held: the staged time doesn't move
  EXPECT_EQ(get(0x07), 0x15);
  EXPECT_EQ(get(0x00), 0x00);
  set(0x0b, 0x02);
  now += 5;
  EXPECT_EQ(get(0x09), 0x30);
  EXPECT_EQ(get(0x08), 0x01);
  EXPECT_EQ(get(0x07), 0x15);
  EXPECT_EQ(get(0x06), 0x03);  // 2030-01-15 is a Tuesday
  EXPECT_EQ(get(0x04), 0x08);
  EXPECT_EQ(get(0x02), 0x00);
  EXPECT_EQ(get(0x00), 0x05);
}

TEST_F(CmosRtcTest, SingleWriteChangesOneField) {
  set(0x02, 0x10);
  EXPECT_EQ(get(0x02), 0x10);
  EXPECT_EQ(get(0x04), 0x13);
  EXPECT_EQ(get(0x00), 0x30);
  now += 60;
  EXPECT_EQ(get(0x02), 0x11);
}

TEST_F(CmosRtcTest, HourWrittenInTwelveHourModeReadsBackIn24) {
  set(0x0b, 0x00);
  set(0x04, 0x83);  // 3 PM
  set(0x0b, 0x02);
  EXPECT_EQ(get(0x04), 0x15);
}

TEST_F(CmosRtcTest, IndexBit7IsTheNmiMaskAndIgnored) {
  EXPECT_EQ(get(0x80 | 0x02), 0x45);
}

TEST_F(CmosRtcTest, CmosRamKeepsValues) {
  set(0x40, 0xa5);
  set(0x7f, 0x5a);
  set(0x01, 0x11);  // alarm seconds: plain storage
  EXPECT_EQ(get(0x40), 0xa5);
  EXPECT_EQ(get(0x7f), 0x5a);
  EXPECT_EQ(get(0x01), 0x11);
  uint8_t index_read = 0;
  rtc.read(kIndex, {&index_read, 1});
  EXPECT_EQ(index_read, 0xff);  // the index port is write-only
}

TEST_F(CmosRtcTest, AbsurdDatesDoNotBreakTheClock) {
  set(0x0b, 0x82);
  set(0x08, 0x99);  // month 99
  set(0x07, 0xff);  // day 165
  set(0x32, 0x00);  // year 0024
  set(0x0b, 0x02);
  get(0x09);
  set(0x0b, 0x86);  // binary: year 255 of century 255
  set(0x09, 0xff);
  set(0x32, 0xff);
  set(0x0b, 0x06);
  get(0x09);
  // Setting a sane date again still works.
  set(0x0b, 0x82);
  set(0x32, 0x20);
  set(0x09, 0x25);
  set(0x08, 0x06);
  set(0x07, 0x01);
  set(0x0b, 0x02);
  EXPECT_EQ(get(0x09), 0x25);
  EXPECT_EQ(get(0x08), 0x06);
  EXPECT_EQ(get(0x07), 0x01);
}

TEST_F(CmosRtcTest, HostileAccessesDoNotCrash) {
  testing::hammer(rtc, CmosRtc::kPortCount);
  set(0x0b, 0x02);
  set(0x50, 0x77);
  EXPECT_EQ(get(0x50), 0x77);
  EXPECT_EQ(get(0x0d), 0x80);
}

}  // namespace
}  // namespace vmm::devices
