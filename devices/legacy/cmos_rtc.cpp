#include "devices/legacy/cmos_rtc.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <cstdint>

#include "devices/legacy/port_io.hpp"

namespace vmm::devices {

namespace {

constexpr uint64_t kIndexPort = 0;    // 0x70
constexpr uint64_t kDataPort = 1;     // 0x71
constexpr uint8_t kIndexMask = 0x7f;  // bit 7 masks NMIs on a PC; nothing to mask here

constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kWeekday = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegA = 0x0a;
constexpr uint8_t kRegB = 0x0b;
constexpr uint8_t kRegC = 0x0c;
constexpr uint8_t kRegD = 0x0d;

constexpr uint8_t kRegAUpdateInProgress = 0x80;
constexpr uint8_t kRegADefault = 0x26;  // 32.768 kHz time base, 1024 Hz periodic rate
constexpr uint8_t kRegBSet = 0x80;
constexpr uint8_t kRegBBinary = 0x04;
constexpr uint8_t kRegB24Hour = 0x02;
constexpr uint8_t kRegBDefault = kRegB24Hour;  // BCD, 24 hours
constexpr uint8_t kRegDValidRam = 0x80;        // battery good
constexpr uint8_t kHourPm = 0x80;

// Limits on restored values: far beyond what register writes reach (years up to about 26000), and
// small enough that no sum with the host clock, timegm() or gmtime_r() over them overflows. A
// staged time within kMaxStagedField sets an offset well within kMaxClockOffset, so whatever a
// restored device does, its next snapshot restores.
constexpr int32_t kMaxStagedField = 1'000'000;
constexpr int64_t kMaxClockOffset = int64_t{1} << 50;  // seconds: about 35 million years

// The fields of a staged time the device reads or timegm() uses, in the order they are saved.
constexpr std::array kStagedFields = {&std::tm::tm_sec,  &std::tm::tm_min, &std::tm::tm_hour,
                                      &std::tm::tm_mday, &std::tm::tm_mon, &std::tm::tm_year,
                                      &std::tm::tm_wday};

}  // namespace

time_t CmosRtc::host_clock() {
  return std::time(nullptr);
}

CmosRtc::CmosRtc(WallClock clock) : clock_(std::move(clock)) {
  ram_[kRegA] = kRegADefault;
  ram_[kRegB] = kRegBDefault;
}

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
  MutexLock lock(mutex_);
  // The callbacks run inside read_ports()/write_ports(), under the lock taken here.
  read_ports(offset, data, kPortCount,
             [this](uint64_t port) VMM_NO_THREAD_SAFETY_ANALYSIS -> uint8_t {
               // The index port is write-only on the chip.
               return port == kDataPort ? read_register(index_) : 0xff;
             });
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
  MutexLock lock(mutex_);
  write_ports(offset, data, kPortCount,
              [this](uint64_t port, uint8_t value) VMM_NO_THREAD_SAFETY_ANALYSIS {
                if (port == kIndexPort) {
                  index_ = value & kIndexMask;
                } else {
                  write_register(index_, value);
                }
              });
}

void CmosRtc::save_state(StateWriter& out) const {
  MutexLock lock(mutex_);
  out.put(index_);
  out.put(ram_);
  out.put(static_cast<int64_t>(offset_));
  // Present exactly while register B's SET bit is, which is how restore_state() knows to read it.
  if (staged_) {
    for (const auto field : kStagedFields) out.put(static_cast<int32_t>((*staged_).*field));
  }
}

void CmosRtc::restore_state(StateReader& in) {
  const auto index = in.get_at_most<uint8_t>(kIndexMask, "the CMOS index");
  const auto ram = in.get<decltype(ram_)>();
  const auto offset = in.get<int64_t>();
  if (offset < -kMaxClockOffset || offset > kMaxClockOffset) {
    in.corrupt("the RTC's offset from the host clock is out of range");
  }
  std::optional<std::tm> staged;
  if (ram[kRegB] & kRegBSet) {
    staged.emplace();
    for (const auto field : kStagedFields) {
      const auto value = in.get<int32_t>();
      if (value < -kMaxStagedField || value > kMaxStagedField) {
        in.corrupt("a time field staged under SET is out of range");
      }
      (*staged).*field = value;
    }
  }

  MutexLock lock(mutex_);
  index_ = index;
  ram_ = ram;
  offset_ = offset;
  staged_ = staged;
}

uint8_t CmosRtc::read_register(uint8_t index) {
  switch (index) {
    case kSeconds: return encode(guest_time().tm_sec);
    case kMinutes: return encode(guest_time().tm_min);
    case kHours: return encode_hour(guest_time().tm_hour);
    case kWeekday: return encode(guest_time().tm_wday + 1);  // 1 = Sunday
    case kDayOfMonth: return encode(guest_time().tm_mday);
    case kMonth: return encode(guest_time().tm_mon + 1);
    case kYear: return encode((guest_time().tm_year + 1900) % 100);
    case kCenturyRegister: return encode((guest_time().tm_year + 1900) / 100);
    case kRegA: return ram_[kRegA] & ~kRegAUpdateInProgress;
    case kRegC: {
      // Interrupt flags, cleared by reading; no interrupt source ever sets one.
      const uint8_t flags = ram_[kRegC];
      ram_[kRegC] = 0;
      return flags;
    }
    case kRegD: return kRegDValidRam;
    default: return ram_[index];
  }
}

void CmosRtc::write_register(uint8_t index, uint8_t value) {
  std::tm time = guest_time();
  const int full_year = time.tm_year + 1900;
  switch (index) {
    case kSeconds: time.tm_sec = decode(value); break;
    case kMinutes: time.tm_min = decode(value); break;
    case kHours: time.tm_hour = decode_hour(value); break;
    case kWeekday: time.tm_wday = decode(value) - 1; break;
    case kDayOfMonth: time.tm_mday = decode(value); break;
    case kMonth: time.tm_mon = decode(value) - 1; break;
    case kYear: time.tm_year = full_year / 100 * 100 + decode(value) - 1900; break;
    case kCenturyRegister: time.tm_year = decode(value) * 100 + full_year % 100 - 1900; break;
    case kRegA: ram_[kRegA] = value & ~kRegAUpdateInProgress; return;
    case kRegB: {
      const bool was_set = ram_[kRegB] & kRegBSet;
      ram_[kRegB] = value;
      if ((value & kRegBSet) && !was_set) {
        staged_ = time;  // freeze the clock while the guest rewrites it
      } else if (!(value & kRegBSet) && was_set) {
        const std::tm staged = *staged_;
        staged_.reset();
        set_guest_time(staged);
      }
      return;
    }
    case kRegC:
    case kRegD: return;  // read-only
    default: ram_[index] = value; return;
  }
  if (staged_) {
    staged_ = time;
  } else {
    set_guest_time(time);
  }
}

std::tm CmosRtc::guest_time() const {
  if (staged_) return *staged_;
  const time_t now = clock_() + offset_;
  std::tm time{};
  if (!gmtime_r(&now, &time)) {
    // Only a guest that set an absurd year gets here; give it the epoch rather than garbage.
    const time_t epoch = 0;
    gmtime_r(&epoch, &time);
  }
  return time;
}

void CmosRtc::set_guest_time(std::tm time) {
  // timegm normalizes out-of-range fields (a BCD 0x99 month, a 31st of February) instead of
  // failing, so a hostile write moves the clock somewhere odd but always somewhere.
  const time_t guest = timegm(&time);
  offset_ = guest - clock_();
  spdlog::debug("cmos rtc: guest set the clock to {} (offset {} s from the host)",
                static_cast<int64_t>(guest), static_cast<int64_t>(offset_));
}

uint8_t CmosRtc::encode(int value) const {
  if (ram_[kRegB] & kRegBBinary) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>((value / 10 % 10) << 4 | value % 10);
}

int CmosRtc::decode(uint8_t value) const {
  if (ram_[kRegB] & kRegBBinary) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t CmosRtc::encode_hour(int hour) const {
  if (ram_[kRegB] & kRegB24Hour) return encode(hour);
  // 12-hour mode: 12 AM, 1 AM .. 11 AM, 12 PM, 1 PM .. 11 PM, with bit 7 marking PM.
  const int twelve = hour % 12 == 0 ? 12 : hour % 12;
  return encode(twelve) | (hour >= 12 ? kHourPm : 0);
}

int CmosRtc::decode_hour(uint8_t value) const {
  if (ram_[kRegB] & kRegB24Hour) return decode(value);
  return decode(value & ~kHourPm) % 12 + ((value & kHourPm) ? 12 : 0);
}

}  // namespace vmm::devices
