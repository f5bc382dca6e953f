#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <span>

#include "base/util/state_stream.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/bus.hpp"

namespace vmm::devices {

// MC146818 real-time clock and its 128 bytes of CMOS RAM: port 0x70 selects a register (bit 7,
// the NMI mask on a PC, is ignored), port 0x71 reads or writes it.
//
// The clock is the host's wall clock (UTC) plus an offset: time registers are computed when the
// guest reads them, in the format register B asks for (BCD or binary, 24 or 12 hours), and a
// guest write to a time register moves the offset, so `hwclock -w` sticks and reads back. Writes
// made while register B's SET bit is held are staged and take effect together when SET clears,
// as Linux's mc146818_set_time does them. The weekday follows from the date; writing it only
// shows while SET is held.
//
// Register A never shows update-in-progress (Linux accepts that and reads without waiting),
// register C reads 0 and register D reports a good battery. No interrupts: periodic, alarm and
// update-ended interrupts are not implemented (the enable bits in register B are stored and do
// nothing), so the device takes no IRQ 8 line.
class CmosRtc final : public BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0x70;
  static constexpr uint64_t kPortCount = 2;
  // CMOS offset of the century byte; the FADT's CENTURY field must name it.
  static constexpr uint8_t kCenturyRegister = 0x32;

  // Seconds since the Unix epoch, UTC.
  using WallClock = std::function<time_t()>;
  static time_t host_clock();

  explicit CmosRtc(WallClock clock = host_clock);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Snapshot, while the machine is paused: the index register, the CMOS RAM (status registers
  // included), the guest's offset from the host clock and a time staged under SET. Not the time
  // itself: a restored clock reads the new host clock plus the guest's offset, so it jumps forward
  // as after a suspend. (The NMI mask, index bit 7, is not kept, so there is none to save.)
  void save_state(StateWriter& out) const;
  // On a freshly constructed device, before the guest runs. Every value is checked first: a bad
  // one throws vmm::Error and leaves the device untouched.
  void restore_state(StateReader& in);

 private:
  uint8_t read_register(uint8_t index) VMM_REQUIRES(mutex_);
  void write_register(uint8_t index, uint8_t value) VMM_REQUIRES(mutex_);
  // The guest's current time, broken down (the staged time while SET is held).
  std::tm guest_time() const VMM_REQUIRES(mutex_);
  void set_guest_time(std::tm time) VMM_REQUIRES(mutex_);
  uint8_t encode(int value) const VMM_REQUIRES(mutex_);
  int decode(uint8_t value) const VMM_REQUIRES(mutex_);
  uint8_t encode_hour(int hour) const VMM_REQUIRES(mutex_);
  int decode_hour(uint8_t value) const VMM_REQUIRES(mutex_);

  // vCPU threads: every port access takes it.
  mutable Mutex mutex_;
  WallClock clock_;
  std::array<uint8_t, 128> ram_ VMM_GUARDED_BY(mutex_){};
  uint8_t index_ VMM_GUARDED_BY(mutex_) = 0;
  time_t offset_ VMM_GUARDED_BY(mutex_) = 0;  // guest time - host time, seconds
  // Set while register B's SET bit is held.
  std::optional<std::tm> staged_ VMM_GUARDED_BY(mutex_);
};

}  // namespace vmm::devices
