#include "devices/legacy/i8042.hpp"

#include <spdlog/spdlog.h>

#include <vector>

#include "devices/legacy/port_io.hpp"

namespace vmm::devices {

namespace {

constexpr uint64_t kDataPort = 0;     // 0x60
constexpr uint64_t kCommandPort = 4;  // 0x64: status on read, command on write

constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;
constexpr uint8_t kStatusLastWasCommand = 0x08;
constexpr uint8_t kStatusUnlocked = 0x10;  // keylock off: Linux warns otherwise

// Command byte (controller RAM byte 0).
constexpr uint8_t kCtrKeyboardInterrupt = 0x01;
constexpr uint8_t kCtrSystemFlag = 0x04;
constexpr uint8_t kCtrKeyboardDisabled = 0x10;
constexpr uint8_t kCtrAuxDisabled = 0x20;
constexpr uint8_t kCtrTranslate = 0x40;

constexpr uint8_t kCmdReadRamFirst = 0x20;  // 0x20: read command byte
constexpr uint8_t kCmdReadRamLast = 0x3f;
constexpr uint8_t kCmdWriteRamFirst = 0x60;  // 0x60: write command byte
constexpr uint8_t kCmdWriteRamLast = 0x7f;
constexpr uint8_t kCmdAuxDisable = 0xa7;
constexpr uint8_t kCmdAuxEnable = 0xa8;
constexpr uint8_t kCmdAuxTest = 0xa9;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdKeyboardTest = 0xab;
constexpr uint8_t kCmdKeyboardDisable = 0xad;
constexpr uint8_t kCmdKeyboardEnable = 0xae;
constexpr uint8_t kCmdReadOutputPort = 0xd0;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
constexpr uint8_t kCmdWriteKeyboardBuffer = 0xd2;
constexpr uint8_t kCmdWriteAuxBuffer = 0xd3;
constexpr uint8_t kCmdWriteAuxDevice = 0xd4;
constexpr uint8_t kCmdPulseFirst = 0xf0;  // 0xf0-0xff pulse output port bits 0-3 low

constexpr uint8_t kSelfTestPassed = 0x55;
constexpr uint8_t kInterfaceOk = 0x00;
constexpr uint8_t kInterfaceClockStuckHigh = 0x02;
constexpr uint8_t kKeyboardResend = 0xfe;

constexpr uint8_t kOutputPortReset = 0x01;  // active low: clearing it resets the CPU
constexpr uint8_t kOutputPortA20 = 0x02;

// Commands whose parameter follows as the next write to the data port.
constexpr bool takes_data_byte(uint8_t command) {
  return (command >= kCmdWriteRamFirst && command <= kCmdWriteRamLast) ||
         (command >= kCmdWriteOutputPort && command <= kCmdWriteAuxDevice);
}

}  // namespace

I8042::I8042(PlatformEvents& events, InterruptLine* keyboard_irq)
    : events_(events),
      keyboard_irq_(keyboard_irq),
      output_port_(kOutputPortReset | kOutputPortA20) {
  // What a PC BIOS leaves behind: keyboard interrupt on, POST passed, scancode translation.
  command_byte() = kCtrKeyboardInterrupt | kCtrSystemFlag | kCtrTranslate;
}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  MutexLock lock(mutex_);
  // The callbacks run inside read_ports()/write_ports(), under the lock taken here.
  read_ports(offset, data, kPortCount,
             [this](uint64_t port) VMM_NO_THREAD_SAFETY_ANALYSIS { return read_port(port); });
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  bool reset = false;
  {
    MutexLock lock(mutex_);
    write_ports(offset, data, kPortCount,
                [this](uint64_t port, uint8_t value)
                    VMM_NO_THREAD_SAFETY_ANALYSIS { write_port(port, value); });
    reset = reset_requested_;
    reset_requested_ = false;
  }
  // Outside the lock: the machine may stop or reset devices in response.
  if (reset) events_.guest_request(GuestRequest::kReboot);
}

void I8042::save_state(StateWriter& out) const {
  MutexLock lock(mutex_);
  out.put(ram_);
  out.put_bytes(std::vector<uint8_t>(output_.begin(), output_.end()));
  out.put(output_port_);  // any value: a cleared reset bit already rebooted the machine
  out.put(pending_command_);
  out.put_bool(last_write_was_command_);
}

void I8042::restore_state(StateReader& in) {
  const auto ram = in.get<decltype(ram_)>();
  const std::vector<uint8_t> output = in.get_bytes(kOutputCapacity);
  const auto output_port = in.get<uint8_t>();
  const auto pending_command = in.get<uint8_t>();
  if (pending_command != 0 && !takes_data_byte(pending_command)) {
    in.corrupt("the pending i8042 command takes no data byte");
  }
  const bool last_write_was_command = in.get_bool();
  std::deque<uint8_t> queued(output.begin(), output.end());

  MutexLock lock(mutex_);
  ram_ = ram;
  output_ = std::move(queued);
  output_port_ = output_port;
  pending_command_ = pending_command;
  last_write_was_command_ = last_write_was_command;
  line_asserted_ = interrupt_wanted();
  if (keyboard_irq_) keyboard_irq_->set_level(line_asserted_);
}

uint8_t I8042::read_port(uint64_t port) {
  if (port == kCommandPort) {
    return (output_.empty() ? 0 : kStatusOutputFull) |
           ((command_byte() & kCtrSystemFlag) ? kStatusSystemFlag : 0) |
           (last_write_was_command_ ? kStatusLastWasCommand : 0) | kStatusUnlocked;
  }
  if (port != kDataPort) return 0xff;  // 0x61-0x63: not decoded
  if (output_.empty()) return 0;
  const uint8_t byte = output_.front();
  output_.pop_front();
  // Each byte gets its own rising edge, even when another one is already queued behind it.
  if (line_asserted_) {
    line_asserted_ = false;
    if (keyboard_irq_) keyboard_irq_->set_level(false);
  }
  update_interrupt();
  return byte;
}

void I8042::write_port(uint64_t port, uint8_t value) {
  if (port == kCommandPort) {
    last_write_was_command_ = true;
    command(value);
  } else if (port == kDataPort) {
    last_write_was_command_ = false;
    write_data(value);
  }
}

void I8042::command(uint8_t command) {
  spdlog::trace("i8042: command {:#04x}", command);
  // A new command abandons one still waiting for its data byte.
  pending_command_ = takes_data_byte(command) ? command : 0;
  if (pending_command_ != 0) return;
  if (command >= kCmdReadRamFirst && command <= kCmdReadRamLast) {
    push_output(ram_[command - kCmdReadRamFirst]);
    return;
  }
  if (command >= kCmdPulseFirst) {
    if (!(command & kOutputPortReset)) {
      spdlog::debug("i8042: reset line pulsed (command {:#04x})", command);
      reset_requested_ = true;
    }
    return;
  }
  switch (command) {
    case kCmdAuxDisable: command_byte() |= kCtrAuxDisabled; return;
    case kCmdAuxEnable: command_byte() &= ~kCtrAuxDisabled; return;
    case kCmdAuxTest:
      push_output(kInterfaceClockStuckHigh);  // no mouse: see the class comment
      return;
    case kCmdSelfTest:
      command_byte() |= kCtrSystemFlag;
      push_output(kSelfTestPassed);
      return;
    case kCmdKeyboardTest: push_output(kInterfaceOk); return;
    case kCmdKeyboardDisable: command_byte() |= kCtrKeyboardDisabled; return;
    case kCmdKeyboardEnable: command_byte() &= ~kCtrKeyboardDisabled; return;
    case kCmdReadOutputPort: push_output(output_port_); return;
    default: spdlog::debug("i8042: unsupported command {:#04x} ignored", command);
  }
}

void I8042::write_data(uint8_t value) {
  const uint8_t command = pending_command_;
  pending_command_ = 0;
  if (command >= kCmdWriteRamFirst && command <= kCmdWriteRamLast) {
    ram_[command - kCmdWriteRamFirst] = value;
    update_interrupt();  // the keyboard interrupt enable may have changed
    return;
  }
  switch (command) {
    case kCmdWriteOutputPort:
      output_port_ = value;
      if (!(value & kOutputPortReset)) {
        spdlog::debug("i8042: reset bit cleared in output port ({:#04x})", value);
        reset_requested_ = true;
      }
      return;
    case kCmdWriteKeyboardBuffer:
    case kCmdWriteAuxBuffer:  // no AUX channel: the echo comes back as keyboard data
      push_output(value);
      return;
    case kCmdWriteAuxDevice:
      spdlog::debug("i8042: byte {:#04x} for the (absent) mouse dropped", value);
      return;
    default: push_output(kKeyboardResend);  // a byte for the keyboard, and no keyboard
  }
}

void I8042::push_output(uint8_t byte) {
  if (output_.size() >= kOutputCapacity) {
    spdlog::debug("i8042: output buffer full, byte {:#04x} dropped", byte);
    return;
  }
  output_.push_back(byte);
  update_interrupt();
}

bool I8042::interrupt_wanted() {
  return !output_.empty() && (command_byte() & kCtrKeyboardInterrupt);
}

void I8042::update_interrupt() {
  const bool asserted = interrupt_wanted();
  if (asserted == line_asserted_) return;
  line_asserted_ = asserted;
  if (keyboard_irq_) keyboard_irq_->set_level(asserted);
}

}  // namespace vmm::devices
