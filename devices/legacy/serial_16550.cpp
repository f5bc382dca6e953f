#include "devices/legacy/serial_16550.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "devices/legacy/port_io.hpp"

namespace vmm::devices {

namespace {

// Port offsets (DLAB = 0 names; with LCR.DLAB set, 0/1 are the divisor latch).
constexpr uint64_t kData = 0;  // RBR (read) / THR (write)
constexpr uint64_t kIer = 1;
constexpr uint64_t kIirFcr = 2;
constexpr uint64_t kLcr = 3;
constexpr uint64_t kMcr = 4;
constexpr uint64_t kLsr = 5;
constexpr uint64_t kMsr = 6;
constexpr uint64_t kScr = 7;

constexpr uint8_t kIerRxData = 0x01;       // ERBFI
constexpr uint8_t kIerThre = 0x02;         // ETBEI
constexpr uint8_t kIerLineStatus = 0x04;   // ELSI
constexpr uint8_t kIerModemStatus = 0x08;  // EDSSI
constexpr uint8_t kIerMask = 0x0f;         // a 16550A has no bits above these

constexpr uint8_t kIirNone = 0x01;
constexpr uint8_t kIirModemStatus = 0x00;
constexpr uint8_t kIirThre = 0x02;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirLineStatus = 0x06;
constexpr uint8_t kIirRxTimeout = 0x0c;
constexpr uint8_t kIirFifoEnabled = 0xc0;  // what Linux's autoconfig tests to call it a 16550A

constexpr uint8_t kFcrEnable = 0x01;
constexpr uint8_t kFcrClearRx = 0x02;
constexpr std::array<uint8_t, 4> kRxTriggerLevels = {1, 4, 8, 14};

constexpr uint8_t kLcrDlab = 0x80;

constexpr uint8_t kMcrDtr = 0x01;
constexpr uint8_t kMcrRts = 0x02;
constexpr uint8_t kMcrOut1 = 0x04;
constexpr uint8_t kMcrOut2 = 0x08;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMcrMask = 0x1f;

constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrOverrun = 0x02;
constexpr uint8_t kLsrThre = 0x20;
constexpr uint8_t kLsrTemt = 0x40;

constexpr uint8_t kMsrDeltaCts = 0x01;
constexpr uint8_t kMsrDeltaDsr = 0x02;
constexpr uint8_t kMsrTrailingRi = 0x04;
constexpr uint8_t kMsrDeltaDcd = 0x08;
constexpr uint8_t kMsrDeltaMask = kMsrDeltaCts | kMsrDeltaDsr | kMsrTrailingRi | kMsrDeltaDcd;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrRi = 0x40;
constexpr uint8_t kMsrDcd = 0x80;

void put_queue(StateWriter& out, const std::deque<uint8_t>& bytes) {
  out.put_bytes(std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

std::deque<uint8_t> get_queue(StateReader& in, size_t max_size) {
  const std::vector<uint8_t> bytes = in.get_bytes(max_size);
  return {bytes.begin(), bytes.end()};
}

}  // namespace

Serial16550::Serial16550(InterruptLine& irq) : irq_(irq) {}

void Serial16550::read(uint64_t offset, std::span<uint8_t> data) {
  bool refill = false;
  {
    MutexLock lock(mutex_);
    // The lambda runs inside read_ports(), under the lock taken above.
    read_ports(offset, data, kPortCount,
               [this](uint64_t port) VMM_NO_THREAD_SAFETY_ANALYSIS { return read_port(port); });
    refill = take_refill_request();
  }
  notify(refill, false);
}

void Serial16550::write(uint64_t offset, std::span<const uint8_t> data) {
  bool refill = false;
  bool drain = false;
  {
    MutexLock lock(mutex_);
    write_ports(offset, data, kPortCount,
                [this](uint64_t port, uint8_t value)
                    VMM_NO_THREAD_SAFETY_ANALYSIS { write_port(port, value); });
    refill = take_refill_request();
    drain = take_drain_request();
  }
  notify(refill, drain);
}

void Serial16550::notify(bool refill, bool drain) {
  std::function<void()> input;
  std::function<void()> output;
  {
    MutexLock lock(mutex_);
    if (refill) input = input_notifier_;
    if (drain) output = output_notifier_;
  }
  if (input) input();
  if (output) output();
}

size_t Serial16550::enqueue_input(std::span<const uint8_t> bytes) {
  MutexLock lock(mutex_);
  const size_t accepted = std::min(bytes.size(), kInputQueueCapacity - input_queue_.size());
  input_queue_.insert(input_queue_.end(), bytes.begin(), bytes.begin() + accepted);
  refill_requested_ = false;
  refill_rx();
  update_interrupt();
  return accepted;
}

size_t Serial16550::input_space() const {
  MutexLock lock(mutex_);
  return kInputQueueCapacity - input_queue_.size();
}

void Serial16550::set_input_notifier(std::function<void()> notify) {
  MutexLock lock(mutex_);
  input_notifier_ = std::move(notify);
}

size_t Serial16550::take_output(std::span<uint8_t> out) {
  MutexLock lock(mutex_);
  const bool was_empty = transmitter_empty();
  const size_t n = std::min(out.size(), output_.size());
  std::copy_n(output_.begin(), n, out.begin());
  output_.erase(output_.begin(), output_.begin() + static_cast<std::ptrdiff_t>(n));
  if (output_.empty()) drain_requested_ = false;  // the next byte asks again
  if (!was_empty && transmitter_empty()) {
    // THR is empty again: the interrupt an interrupt-driven driver waits for to send more.
    thre_pending_ = true;
    update_interrupt();
  }
  return n;
}

void Serial16550::set_output_notifier(std::function<void()> notify) {
  MutexLock lock(mutex_);
  output_notifier_ = std::move(notify);
}

size_t Serial16550::output_pending() const {
  MutexLock lock(mutex_);
  return output_.size();
}

uint64_t Serial16550::dropped_output() const {
  MutexLock lock(mutex_);
  return dropped_output_;
}

void Serial16550::save_state(StateWriter& out) const {
  MutexLock lock(mutex_);
  out.put(divisor_);
  out.put(ier_);
  out.put(lcr_);
  out.put(mcr_);
  out.put(scr_);
  out.put(msr_deltas_);
  out.put_bool(fifo_enabled_);
  out.put(rx_trigger_);
  out.put_bool(overrun_);
  out.put_bool(thre_pending_);
  put_queue(out, rx_fifo_);
  put_queue(out, input_queue_);
  put_queue(out, output_);
}

void Serial16550::restore_state(StateReader& in) {
  const auto divisor = in.get<uint16_t>();  // any value: the guest may write 0 too
  const auto ier = in.get<uint8_t>();
  if (ier & ~kIerMask) in.corrupt("IER has bits a 16550A does not have");
  const auto lcr = in.get<uint8_t>();
  const auto mcr = in.get<uint8_t>();
  if (mcr & ~kMcrMask) in.corrupt("MCR has bits a 16550A does not have");
  const auto scr = in.get<uint8_t>();
  const auto msr_deltas = in.get<uint8_t>();
  if (msr_deltas & ~kMsrDeltaMask) in.corrupt("MSR deltas have bits outside 0-3");
  const bool fifo_enabled = in.get_bool();
  const auto rx_trigger = in.get<uint8_t>();
  // write_fcr() leaves a trigger of 1 with the FIFO off, one of the four levels with it on.
  const bool trigger_valid =
      fifo_enabled ? std::ranges::find(kRxTriggerLevels, rx_trigger) != kRxTriggerLevels.end()
                   : rx_trigger == 1;
  if (!trigger_valid) in.corrupt("the RX trigger level is not one FCR can set");
  const bool overrun = in.get_bool();
  const bool thre_pending = in.get_bool();
  std::deque<uint8_t> rx_fifo = get_queue(in, kFifoSize);
  if (!fifo_enabled && rx_fifo.size() > 1) in.corrupt("RBR holds more than one byte");
  std::deque<uint8_t> input_queue = get_queue(in, kInputQueueCapacity);
  std::deque<uint8_t> output = get_queue(in, kOutputBufferCapacity);

  bool refill = false;
  bool drain = false;
  {
    MutexLock lock(mutex_);
    divisor_ = divisor;
    ier_ = ier;
    lcr_ = lcr;
    mcr_ = mcr;
    scr_ = scr;
    msr_deltas_ = msr_deltas;
    fifo_enabled_ = fifo_enabled;
    rx_trigger_ = rx_trigger;
    overrun_ = overrun;
    thre_pending_ = thre_pending;
    rx_fifo_ = std::move(rx_fifo);
    input_queue_ = std::move(input_queue);
    output_ = std::move(output);
    // The level follows from the registers (update_interrupt() keeps it so after every access),
    // so it is derived here rather than trusted from the file.
    line_asserted_ = interrupt_id() != kIirNone;
    irq_.set_level(line_asserted_);
    refill = take_refill_request();
    drain = take_drain_request();
  }
  notify(refill, drain);
}

uint8_t Serial16550::read_port(uint64_t port) {
  const bool dlab = lcr_ & kLcrDlab;
  switch (port) {
    case kData: {
      if (dlab) return divisor_ & 0xff;
      if (rx_fifo_.empty()) return 0;
      const uint8_t byte = rx_fifo_.front();
      rx_fifo_.pop_front();
      update_interrupt();
      return byte;
    }
    case kIer: return dlab ? divisor_ >> 8 : ier_;
    case kIirFcr: {
      const uint8_t id = interrupt_id();
      // Reading IIR is how the guest acknowledges a THR-empty interrupt.
      if (id == kIirThre) {
        thre_pending_ = false;
        update_interrupt();
      }
      return id | (fifo_enabled_ ? kIirFifoEnabled : 0);
    }
    case kLcr: return lcr_;
    case kMcr: return mcr_;
    case kLsr: {
      // A guest polling LSR.DR with the receive interrupt off gets queued input here, not after a
      // round trip through the event loop for every byte (no interrupt handler to pace).
      if (!(ier_ & kIerRxData) && rx_fifo_.empty() && !input_queue_.empty()) {
        refill_rx();
        // The loop may hold more (a paused stdin, a long paste): it feeds the queue again.
        queue_emptied_ = input_queue_.empty();
      }
      const uint8_t status = line_status();
      overrun_ = false;
      update_interrupt();
      return status;
    }
    case kMsr: {
      const uint8_t status = modem_status() | msr_deltas_;
      msr_deltas_ = 0;
      update_interrupt();
      return status;
    }
    case kScr: return scr_;
  }
  return 0xff;
}

void Serial16550::write_port(uint64_t port, uint8_t value) {
  const bool dlab = lcr_ & kLcrDlab;
  if (port != kData || dlab) spdlog::trace("serial: port {} <- {:#04x}", port, value);
  switch (port) {
    case kData:
      if (dlab) {
        divisor_ = (divisor_ & 0xff00) | value;
      } else {
        transmit(value);
      }
      return;
    case kIer:
      if (dlab) {
        divisor_ = static_cast<uint16_t>((divisor_ & 0x00ff) | (value << 8));
      } else {
        write_ier(value);
      }
      return;
    case kIirFcr: write_fcr(value); return;
    case kLcr: lcr_ = value; return;
    case kMcr: write_mcr(value); return;
    case kScr: scr_ = value; return;
    default: return;  // LSR and MSR writes are factory-test features a 16550A guest never relies on
  }
}

void Serial16550::transmit(uint8_t byte) {
  // THR fills (the THRE interrupt drops), the byte goes into the output buffer, THR is empty again
  // if the buffer still has room (the interrupt comes back): the line falls and rises, so each
  // byte sent yields a fresh edge. A full buffer holds THRE back until take_output() makes room.
  thre_pending_ = false;
  update_interrupt();
  if (loopback()) {
    if (rx_fifo_.size() < rx_capacity()) {
      rx_fifo_.push_back(byte);
    } else {
      overrun_ = true;
      spdlog::debug("serial: loopback overrun, byte {:#04x} lost", byte);
    }
  } else if (output_.size() < kOutputBufferCapacity) {
    output_.push_back(byte);
  } else if (dropped_output_++ == 0) {
    spdlog::debug("serial: the guest wrote THR while the transmitter was busy; byte {:#04x} lost",
                  byte);
  }
  thre_pending_ = transmitter_empty();
  update_interrupt();
}

void Serial16550::write_ier(uint8_t value) {
  value &= kIerMask;
  const uint8_t changed = ier_ ^ value;
  ier_ = value;
  // Setting ETBEI while THR is empty raises THRE even if the guest acknowledged it before:
  // Linux's 8250 probe (UART_BUG_THRE test) and its TX start path rely on it. While the output
  // buffer is full THR is not empty: take_output() raises THRE once it makes room.
  if (changed & kIerThre) thre_pending_ = (ier_ & kIerThre) && transmitter_empty();
  update_interrupt();
}

void Serial16550::write_fcr(uint8_t value) {
  const bool enable = value & kFcrEnable;
  // Toggling the FIFO enable empties the FIFOs, as on the chip.
  if (enable != fifo_enabled_ || (value & kFcrClearRx)) rx_fifo_.clear();
  fifo_enabled_ = enable;
  rx_trigger_ = enable ? kRxTriggerLevels[value >> 6] : 1;
  update_interrupt();
}

void Serial16550::write_mcr(uint8_t value) {
  const uint8_t before = modem_status();
  mcr_ = value & kMcrMask;
  const uint8_t after = modem_status();
  const uint8_t changed = before ^ after;
  if (changed & kMsrCts) msr_deltas_ |= kMsrDeltaCts;
  if (changed & kMsrDsr) msr_deltas_ |= kMsrDeltaDsr;
  if (changed & kMsrDcd) msr_deltas_ |= kMsrDeltaDcd;
  if ((before & kMsrRi) && !(after & kMsrRi)) msr_deltas_ |= kMsrTrailingRi;
  update_interrupt();
}

bool Serial16550::loopback() const {
  return mcr_ & kMcrLoop;
}

size_t Serial16550::rx_capacity() const {
  return fifo_enabled_ ? kFifoSize : 1;
}

bool Serial16550::transmitter_empty() const {
  return kOutputBufferCapacity - output_.size() >= kFifoSize;
}

uint8_t Serial16550::modem_status() const {
  if (loopback()) {
    // The modem control outputs are wired back to the status inputs.
    return ((mcr_ & kMcrRts) ? kMsrCts : 0) | ((mcr_ & kMcrDtr) ? kMsrDsr : 0) |
           ((mcr_ & kMcrOut1) ? kMsrRi : 0) | ((mcr_ & kMcrOut2) ? kMsrDcd : 0);
  }
  // A null-modem peer that is always there: carrier, data set ready, clear to send.
  return kMsrDcd | kMsrDsr | kMsrCts;
}

uint8_t Serial16550::line_status() const {
  return (rx_fifo_.empty() ? 0 : kLsrDataReady) | (overrun_ ? kLsrOverrun : 0) |
         (transmitter_empty() ? kLsrThre | kLsrTemt : 0);
}

uint8_t Serial16550::interrupt_id() const {
  if ((ier_ & kIerLineStatus) && overrun_) return kIirLineStatus;
  if ((ier_ & kIerRxData) && !rx_fifo_.empty()) {
    // Below the trigger level a real FIFO reports a character timeout after four character
    // times; with no line timing to model, the timeout is reported at once.
    return (fifo_enabled_ && rx_fifo_.size() < rx_trigger_) ? kIirRxTimeout : kIirRxData;
  }
  if ((ier_ & kIerThre) && thre_pending_) return kIirThre;
  if ((ier_ & kIerModemStatus) && msr_deltas_) return kIirModemStatus;
  return kIirNone;
}

void Serial16550::refill_rx() {
  if (loopback()) return;  // the receiver listens to the transmitter, not the host
  while (!input_queue_.empty() && rx_fifo_.size() < rx_capacity()) {
    rx_fifo_.push_back(input_queue_.front());
    input_queue_.pop_front();
  }
}

void Serial16550::update_interrupt() {
  const bool asserted = interrupt_id() != kIirNone;
  if (asserted == line_asserted_) return;
  line_asserted_ = asserted;
  irq_.set_level(asserted);
}

bool Serial16550::take_refill_request() {
  if (refill_requested_ || loopback()) return false;
  // The FIFO ran dry with input queued (the loop moves it in, paced), or a polling guest took the
  // last of the queue (the loop has room to feed more).
  const bool fifo_dry = rx_fifo_.empty() && !input_queue_.empty();
  if (!fifo_dry && !std::exchange(queue_emptied_, false)) return false;
  refill_requested_ = true;
  return true;
}

bool Serial16550::take_drain_request() {
  if (drain_requested_ || output_.empty()) return false;
  drain_requested_ = true;
  return true;
}

}  // namespace vmm::devices
