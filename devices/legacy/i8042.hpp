#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <span>

#include "base/util/state_stream.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_line.hpp"
#include "devices/platform_events.hpp"

namespace vmm::devices {

// The PS/2 controller (i8042) with nothing plugged in. It exists so Linux's i8042 probe finishes
// quickly and so the guest can reset the machine through it (command 0xFE, the classic
// `reboot=k` path, or clearing the reset bit of the output port).
//
// One device registered once at kPortBase over kPortCount ports: offset 0 is the data port
// (0x60), offset 4 the status/command port (0x64). Offsets 1-3 (0x61-0x63) are not decoded: they
// read all-ones and ignore writes (port 0x61, the speaker/PIT gate port, is served by the
// in-kernel PIT when KVM_CREATE_PIT2 is used, so those accesses never arrive here).
//
// Nothing attached, and Linux told so without waiting on timeouts:
// - AUX (mouse) channel: the AUX loopback command (0xD3) echoes its byte as keyboard data, and
//   the AUX interface test (0xA9) answers 0x02 ("clock line stuck high"): Linux's
//   i8042_check_aux gives up after those two commands instead of running its 250 ms AUX IRQ test.
// - Keyboard: any byte sent to the keyboard is answered with 0xFE (resend), so libps2 fails its
//   commands after a retry instead of waiting for an ACK that never comes (with the IRQ line; a
//   guest polling without it sees the 0xFE in the output buffer).
class I8042 final : public BusDevice {
 public:
  static constexpr uint16_t kPortBase = 0x60;
  static constexpr uint64_t kPortCount = 5;
  static constexpr uint32_t kKeyboardIrq = 1;
  // Output bytes held for the guest; more than any command sequence produces.
  static constexpr size_t kOutputCapacity = 16;

  // `events` and `keyboard_irq` (may be null: no IRQ 1) must outlive the device.
  I8042(PlatformEvents& events, InterruptLine* keyboard_irq);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Snapshot, while the machine is paused: controller RAM (the command byte), the output buffer,
  // the output port, a command waiting for its data byte and the status's last-write bit.
  void save_state(StateWriter& out) const;
  // On a freshly constructed device, before the guest runs. Every value is checked first: a bad
  // one throws vmm::Error and leaves the device untouched. Then IRQ 1 is driven to the level the
  // restored state calls for.
  void restore_state(StateReader& in);

 private:
  uint8_t read_port(uint64_t port) VMM_REQUIRES(mutex_);
  void write_port(uint64_t port, uint8_t value) VMM_REQUIRES(mutex_);
  void command(uint8_t command) VMM_REQUIRES(mutex_);
  void write_data(uint8_t value) VMM_REQUIRES(mutex_);
  void push_output(uint8_t byte) VMM_REQUIRES(mutex_);
  uint8_t& command_byte() VMM_REQUIRES(mutex_) { return ram_[0]; }
  // IRQ 1 = output buffer full and the command byte enables the keyboard interrupt.
  bool interrupt_wanted() VMM_REQUIRES(mutex_);
  void update_interrupt() VMM_REQUIRES(mutex_);

  // vCPU threads: every port access takes it.
  mutable Mutex mutex_;
  PlatformEvents& events_;
  InterruptLine* keyboard_irq_;

  // Controller RAM; byte 0 is the command byte.
  std::array<uint8_t, 32> ram_ VMM_GUARDED_BY(mutex_){};
  std::deque<uint8_t> output_ VMM_GUARDED_BY(mutex_);  // what the guest reads from port 0x60
  // A command waiting for its data byte, or 0.
  uint8_t pending_command_ VMM_GUARDED_BY(mutex_) = 0;
  uint8_t output_port_ VMM_GUARDED_BY(mutex_);
  bool last_write_was_command_ VMM_GUARDED_BY(mutex_) = false;
  // Reported after the lock is released.
  bool reset_requested_ VMM_GUARDED_BY(mutex_) = false;
  bool line_asserted_ VMM_GUARDED_BY(mutex_) = false;
};

}  // namespace vmm::devices
