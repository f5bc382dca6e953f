#include "devices/legacy/cmos_rtc.hpp"

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/state_stream.hpp"
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

uint8_t get_register(CmosRtc& rtc, uint8_t index) {
  testing::outb(rtc, kIndex, index);
  return testing::inb(rtc, kData);
}

void set_register(CmosRtc& rtc, uint8_t index, uint8_t value) {
  testing::outb(rtc, kIndex, index);
  testing::outb(rtc, kData, value);
}

class CmosRtcTest : public ::testing::Test {
 protected:
  uint8_t get(uint8_t index) { return get_register(rtc, index); }
  void set(uint8_t index, uint8_t value) { set_register(rtc, index, value); }

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

// Snapshot and restore.
std::vector<uint8_t> save(const CmosRtc& rtc) {
  StateWriter writer;
  rtc.save_state(writer);
  return writer.take();
}

void restore(CmosRtc& rtc, std::span<const uint8_t> state) {
  StateReader reader(state, "cmos rtc");
  rtc.restore_state(reader);
  reader.expect_end();
}

// Every register as the guest reads it (register C clears as it is read, on both alike).
std::vector<uint8_t> all_registers(CmosRtc& rtc) {
  std::vector<uint8_t> values(128);
  for (size_t index = 0; index < values.size(); ++index) {
    values[index] = get_register(rtc, static_cast<uint8_t>(index));
  }
  return values;
}

// Sets the clock to 2030-01-15 08:00:00 the way hwclock -w does.
void set_clock_to_2030(CmosRtc& rtc) {
  set_register(rtc, 0x0b, 0x82);
  for (const auto& [index, value] : std::to_array<std::pair<uint8_t, uint8_t>>({{0x32, 0x20},
                                                                                {0x09, 0x30},
                                                                                {0x08, 0x01},
                                                                                {0x07, 0x15},
                                                                                {0x04, 0x08},
                                                                                {0x02, 0x00},
                                                                                {0x00, 0x00}})) {
    set_register(rtc, index, value);
  }
}

TEST_F(CmosRtcTest, ARestoredClockBehavesAsTheOriginal) {
  set_clock_to_2030(rtc);
  set(0x0b, 0x06);  // SET released; binary, 24 hours
  set(0x0a, 0x2f);
  set(0x40, 0xa5);
  set(0x7f, 0x5a);
  testing::outb(rtc, kIndex, 0x40);  // the index, left for the next data access

  CmosRtc copy([this] { return now; });
  restore(copy, save(rtc));
  EXPECT_EQ(testing::inb(copy, kData), 0xa5);
  EXPECT_EQ(testing::inb(rtc, kData), 0xa5);
  EXPECT_EQ(all_registers(copy), all_registers(rtc));
  EXPECT_EQ(get_register(copy, 0x09), 30);
  EXPECT_EQ(get_register(copy, 0x04), 8);
}

// The guest's clock keeps its offset from the host's, not the time it read at the snapshot: a
// restore an hour later reads an hour later, as after a suspend.
TEST_F(CmosRtcTest, ARestoredClockRunsOnFromTheHostClock) {
  set_clock_to_2030(rtc);
  set(0x0b, 0x02);
  const std::vector<uint8_t> state = save(rtc);
  now += 3600;
  CmosRtc copy([this] { return now; });
  restore(copy, state);
  EXPECT_EQ(get_register(copy, 0x07), 0x15);
  EXPECT_EQ(get_register(copy, 0x04), 0x09);
  EXPECT_EQ(get_register(copy, 0x02), 0x00);
}

// A snapshot in the middle of hwclock -w: the time the guest staged is kept, and takes effect when
// it releases SET.
TEST_F(CmosRtcTest, ATimeStagedUnderSetSurvivesARestore) {
  set_clock_to_2030(rtc);
  CmosRtc copy([this] { return now; });
  restore(copy, save(rtc));
  now += 10;
  EXPECT_EQ(all_registers(copy), all_registers(rtc));
  set(0x0b, 0x02);
  set_register(copy, 0x0b, 0x02);
  now += 5;
  EXPECT_EQ(all_registers(copy), all_registers(rtc));
  EXPECT_EQ(get_register(copy, 0x00), 0x05);
  EXPECT_EQ(get_register(copy, 0x09), 0x30);
}

// A restore that threw left the clock as constructed.
void expect_untouched(CmosRtc& rtc) {
  EXPECT_EQ(testing::inb(rtc, kData), 0x30);  // index 0: the host's seconds
  EXPECT_EQ(get_register(rtc, 0x0b), 0x02);
  EXPECT_EQ(get_register(rtc, 0x09), 0x24);
  EXPECT_EQ(get_register(rtc, 0x40), 0x00);
}

TEST_F(CmosRtcTest, TruncatedStateThrowsAndChangesNothing) {
  set_clock_to_2030(rtc);
  set(0x40, 0xa5);
  const std::vector<uint8_t> state = save(rtc);
  for (size_t size = 0; size < state.size(); ++size) {
    CmosRtc copy([this] { return now; });
    EXPECT_THROW(restore(copy, std::span(state).first(size)), Error) << size << " bytes";
    expect_untouched(copy);
  }
}

// The saved fields, in order, to build states a clock could never have saved.
struct SavedRtc {
  uint8_t index = 0;
  std::array<uint8_t, 128> ram = [] {
    std::array<uint8_t, 128> defaults{};
    defaults[0x0a] = 0x26;
    defaults[0x0b] = 0x02;
    return defaults;
  }();
  int64_t offset = 0;
  std::optional<std::array<int32_t, 7>> staged{};  // needs register B's SET bit

  std::vector<uint8_t> bytes() const {
    StateWriter writer;
    writer.put(index);
    writer.put(ram);
    writer.put(offset);
    if (staged) writer.put(*staged);
    return writer.take();
  }
  SavedRtc with_staged(std::array<int32_t, 7> fields) const {
    SavedRtc copy = *this;
    copy.ram[0x0b] |= 0x80;
    copy.staged = fields;
    return copy;
  }
};

TEST_F(CmosRtcTest, AFreshClockSavesTheFieldsInTheirOrder) {
  EXPECT_EQ(save(rtc), SavedRtc{}.bytes());
}

TEST_F(CmosRtcTest, OutOfRangeValuesThrowAndChangeNothing) {
  constexpr int64_t kMaxOffset = int64_t{1} << 50;
  constexpr int32_t kMaxField = 1'000'000;
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"index 0x80", SavedRtc{.index = 0x80}.bytes()},
      {"an offset past the future", SavedRtc{.offset = kMaxOffset + 1}.bytes()},
      {"an offset past the past", SavedRtc{.offset = -kMaxOffset - 1}.bytes()},
      {"a huge staged year", SavedRtc{}.with_staged({0, 0, 0, 1, 0, kMaxField + 1, 0}).bytes()},
      {"a huge negative staged second",
       SavedRtc{}.with_staged({-kMaxField - 1, 0, 0, 1, 0, 100, 0}).bytes()},
      {"SET without a staged time",
       [] {
         SavedRtc fields;
         fields.ram[0x0b] |= 0x80;
         return fields.bytes();
       }()},
  };
  for (const auto& [name, state] : cases) {
    CmosRtc copy([this] { return now; });
    EXPECT_THROW(restore(copy, state), Error) << name;
    expect_untouched(copy);
  }
  // At the limits a restored clock still reads and sets without trouble.
  for (const auto& state :
       {SavedRtc{.offset = kMaxOffset}.bytes(), SavedRtc{.offset = -kMaxOffset}.bytes(),
        SavedRtc{}
            .with_staged(
                {kMaxField, kMaxField, kMaxField, kMaxField, kMaxField, kMaxField, kMaxField})
            .bytes(),
        SavedRtc{}
            .with_staged({-kMaxField, -kMaxField, -kMaxField, -kMaxField, -kMaxField, -kMaxField,
                          -kMaxField})
            .bytes()}) {
    CmosRtc copy([this] { return now; });
    restore(copy, state);
    all_registers(copy);
    set_register(copy, 0x09, 0x25);
    set_register(copy, 0x0b, 0x02);  // releases SET where it was held
    all_registers(copy);
    restore(copy, save(copy));  // and what it then saves restores
  }
}

}  // namespace
}  // namespace vmm::devices
