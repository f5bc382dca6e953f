#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/bus.hpp"
#include "devices/interrupt_line.hpp"

namespace vmm::devices {

// A 16550A UART (COM1 on a PC), enough of it that Linux's 8250 driver autoconfigures it as a
// "16550A" and runs it interrupt-driven. Transmission is instantaneous: THR and the transmitter
// are always empty again by the time the guest looks, so THRE/TEMT always read set.
//
// Guest side: registered on the PIO bus at kCom1Base, kPortCount ports; vCPU threads call
// read()/write() concurrently.
// Host side: bytes the guest transmits go to the OutputSink (called under the device lock, from a
// vCPU thread: it must not block and must not call back into the device). Input is queued by the
// event loop with enqueue_input(), which moves what fits into the 16-byte RX FIFO. Refills after
// that also happen in enqueue_input(), never in the guest's RBR read: the guest's interrupt
// handler sees its FIFO run dry and returns, the way it would at line rate, instead of draining
// an arbitrarily long paste in one interrupt. The device asks for the refill through the input
// notifier.
class Serial16550 final : public BusDevice {
 public:
  static constexpr uint16_t kCom1Base = 0x3f8;
  static constexpr uint64_t kPortCount = 8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kFifoSize = 16;
  // Host-side input held for the guest before enqueue_input() pushes back.
  static constexpr size_t kInputQueueCapacity = 64 * 1024;

  using OutputSink = std::function<void(std::span<const uint8_t>)>;

  // `irq` must outlive the device. An empty `output` discards what the guest transmits.
  Serial16550(InterruptLine& irq, OutputSink output);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Event-loop side. Queues up to input_space() bytes of input for the guest and returns how many
  // it took (fewer than offered only when the caller ignored input_space(); the rest is the
  // caller's to keep). Then refills the RX FIFO from the queue. An empty span only refills.
  size_t enqueue_input(std::span<const uint8_t> bytes);
  // How many bytes enqueue_input() accepts now. 0: stop reading the input source; space comes
  // back only through enqueue_input() calls (made on the notifier's request), so check again
  // after each.
  size_t input_space() const;
  // `notify` is called from a vCPU thread, without the device lock held, when the guest drained
  // the RX FIFO while queued input waits. The event loop answers by calling enqueue_input() (an
  // empty span will do). Called once per drain, not per guest access. Set before the guest runs.
  void set_input_notifier(std::function<void()> notify);

 private:
  uint8_t read_port(uint64_t port);
  void write_port(uint64_t port, uint8_t value);
  void transmit(uint8_t byte);
  void write_ier(uint8_t value);
  void write_fcr(uint8_t value);
  void write_mcr(uint8_t value);
  bool loopback() const;
  size_t rx_capacity() const;
  uint8_t modem_status() const;
  uint8_t line_status() const;
  // The highest-priority enabled pending interrupt as IIR bits 0-3 (0x01: none).
  uint8_t interrupt_id() const;
  // Moves host input into the RX FIFO while there is room (not in loopback).
  void refill_rx();
  // Drives the line to "an enabled interrupt is pending". Called after every state change, so a
  // condition that clears and comes back within one access still makes the falling and rising
  // edge the (edge-triggered) IOAPIC needs to see it again.
  void update_interrupt();
  // True when the input notifier should run once the lock is released.
  bool take_refill_request();

  mutable std::mutex mutex_;
  InterruptLine& irq_;
  OutputSink output_;
  std::function<void()> input_notifier_;

  std::deque<uint8_t> input_queue_;  // host input not yet in the FIFO
  std::deque<uint8_t> rx_fifo_;      // at most rx_capacity() bytes
  bool refill_requested_ = false;    // notifier called, enqueue_input() not yet

  uint16_t divisor_ = 1;  // 115200 baud; never 0, earlycon divides by it to probe the baud rate
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0;
  uint8_t mcr_ = 0;
  uint8_t scr_ = 0;
  uint8_t msr_deltas_ = 0;  // MSR bits 0-3, cleared by reading MSR
  bool fifo_enabled_ = false;
  uint8_t rx_trigger_ = 1;
  bool overrun_ = false;       // LSR OE, cleared by reading LSR
  bool thre_pending_ = false;  // THR-empty interrupt condition, cleared by IIR read or THR write
  bool line_asserted_ = false;
};

}  // namespace vmm::devices
