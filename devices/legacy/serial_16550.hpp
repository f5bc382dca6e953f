#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>

#include "base/util/state_stream.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_line.hpp"

namespace vmm::devices {

// A 16550A UART (COM1 on a PC), enough of it that Linux's 8250 driver autoconfigures it as a
// "16550A" and runs it interrupt-driven.
//
// Guest side: registered on the PIO bus at kCom1Base, kPortCount ports; vCPU threads call
// read()/write() concurrently. Nothing a guest does here waits on the host.
//
// Output: bytes the guest transmits go into a bounded buffer (kOutputBufferCapacity) that the
// event loop empties with take_output() and writes to the console sink at its own pace. The
// buffer is the transmitter: while it has room for a FIFO's worth (kFifoSize), LSR reads THRE and
// TEMT set; below that they read clear, so a driver that waits for THRE (Linux's 8250 console and
// its interrupt-driven TX, which writes up to kFifoSize bytes per THRE) waits for the host's
// reader instead of vmm blocking a vCPU. When take_output() makes room again, a THRE interrupt is
// raised (when enabled), so an interrupt-driven driver resumes. A byte written while the buffer
// is completely full (the guest ignored THRE) is lost, as a real UART's overwritten THR would be;
// dropped_output() counts them. The device asks for a drain through the output notifier.
//
// Input is queued by the event loop with enqueue_input(), which moves what fits into the 16-byte
// RX FIFO. Refills after that also happen in enqueue_input(), never in the guest's RBR read: the
// guest's interrupt handler sees its FIFO run dry and returns, the way it would at line rate,
// instead of draining an arbitrarily long paste in one interrupt. The device asks for the refill
// through the input notifier. A guest that polls instead (the receive interrupt off) is refilled
// when it reads LSR with the FIFO empty: nothing to pace there, and a round trip through the loop
// for every byte would make it crawl.
class Serial16550 final : public BusDevice {
 public:
  static constexpr uint16_t kCom1Base = 0x3f8;
  static constexpr uint64_t kPortCount = 8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kFifoSize = 16;
  // Host-side input held for the guest before enqueue_input() pushes back.
  static constexpr size_t kInputQueueCapacity = 64 * 1024;
  // Guest output held for the event loop before THRE/TEMT read clear.
  static constexpr size_t kOutputBufferCapacity = 64 * 1024;

  // `irq` must outlive the device.
  explicit Serial16550(InterruptLine& irq);

  void read(uint64_t offset, std::span<uint8_t> data) override VMM_EXCLUDES(mutex_);
  void write(uint64_t offset, std::span<const uint8_t> data) override VMM_EXCLUDES(mutex_);

  // Event-loop side. Queues up to input_space() bytes of input for the guest and returns how many
  // it took (fewer than offered only when the caller ignored input_space(); the rest is the
  // caller's to keep). Then refills the RX FIFO from the queue. An empty span only refills.
  size_t enqueue_input(std::span<const uint8_t> bytes) VMM_EXCLUDES(mutex_);
  // How many bytes enqueue_input() accepts now. 0: stop reading the input source; space comes
  // back only through enqueue_input() calls (made on the notifier's request), so check again
  // after each.
  size_t input_space() const VMM_EXCLUDES(mutex_);
  // `notify` is called from a vCPU thread, without the device lock held, when the guest drained
  // the RX FIFO while queued input waits. The event loop answers by calling enqueue_input() (an
  // empty span will do). Called once per drain, not per guest access. Set before the guest runs.
  void set_input_notifier(std::function<void()> notify) VMM_EXCLUDES(mutex_);

  // Event-loop side. Moves up to out.size() bytes of guest output, oldest first, into `out` and
  // returns how many. When that makes room for a FIFO's worth again, THRE and TEMT read set and a
  // THRE interrupt is raised if the guest enabled it. A return of 0 (the buffer is empty) re-arms
  // the notifier; until then the caller keeps calling take_output() (at its own pace).
  size_t take_output(std::span<uint8_t> out) VMM_EXCLUDES(mutex_);
  // `notify` is called from a vCPU thread, without the device lock held, when output arrives in
  // an empty buffer (or one that take_output() last left empty). Called once per take_output()
  // that emptied the buffer, not per byte. Set before the guest runs.
  void set_output_notifier(std::function<void()> notify) VMM_EXCLUDES(mutex_);
  // Bytes waiting for take_output().
  size_t output_pending() const VMM_EXCLUDES(mutex_);
  // Bytes the guest wrote while the output buffer was full (it ignored THRE).
  uint64_t dropped_output() const VMM_EXCLUDES(mutex_);

  // Snapshot, while the machine is paused: every register, the RX FIFO, the queued host input and
  // the output not yet taken (so nothing the guest printed is lost). Host-side bookkeeping (the
  // notifier handshakes, dropped_output()) belongs to this process's event loop and is not saved.
  void save_state(StateWriter& out) const VMM_EXCLUDES(mutex_);
  // On a freshly constructed device, its notifiers set, before the guest runs. Every value is
  // checked first: a bad one throws vmm::Error and leaves the device untouched. Then the line is
  // driven to the level the registers call for, and the notifiers are asked for what the old
  // process's event loop was owed: a refill if the FIFO is dry with input queued, a drain if
  // output is pending.
  void restore_state(StateReader& in) VMM_EXCLUDES(mutex_);

 private:
  // Everything below runs with mutex_ held.
  uint8_t read_port(uint64_t port) VMM_REQUIRES(mutex_);
  void write_port(uint64_t port, uint8_t value) VMM_REQUIRES(mutex_);
  void transmit(uint8_t byte) VMM_REQUIRES(mutex_);
  void write_ier(uint8_t value) VMM_REQUIRES(mutex_);
  void write_fcr(uint8_t value) VMM_REQUIRES(mutex_);
  void write_mcr(uint8_t value) VMM_REQUIRES(mutex_);
  bool loopback() const VMM_REQUIRES(mutex_);
  size_t rx_capacity() const VMM_REQUIRES(mutex_);
  // The output buffer has room for a FIFO's worth: THR (and the transmitter) read empty.
  bool transmitter_empty() const VMM_REQUIRES(mutex_);
  uint8_t modem_status() const VMM_REQUIRES(mutex_);
  uint8_t line_status() const VMM_REQUIRES(mutex_);
  // The highest-priority enabled pending interrupt as IIR bits 0-3 (0x01: none).
  uint8_t interrupt_id() const VMM_REQUIRES(mutex_);
  // Moves host input into the RX FIFO while there is room (not in loopback).
  void refill_rx() VMM_REQUIRES(mutex_);
  // Drives the line to "an enabled interrupt is pending". Called after every state change, so a
  // condition that clears and comes back within one access still makes the falling and rising
  // edge the (edge-triggered) IOAPIC needs to see it again.
  void update_interrupt() VMM_REQUIRES(mutex_);
  // True when the input notifier should run once the lock is released.
  bool take_refill_request() VMM_REQUIRES(mutex_);
  // True when the output notifier should run once the lock is released.
  bool take_drain_request() VMM_REQUIRES(mutex_);
  // Runs the notifiers take_*_request() asked for; called without the lock.
  void notify(bool refill, bool drain) VMM_EXCLUDES(mutex_);

  mutable Mutex mutex_;
  InterruptLine& irq_;
  // Set before the guest runs, then only read.
  std::function<void()> input_notifier_ VMM_GUARDED_BY(mutex_);
  std::function<void()> output_notifier_ VMM_GUARDED_BY(mutex_);

  std::deque<uint8_t> input_queue_ VMM_GUARDED_BY(mutex_);  // host input not yet in the FIFO
  std::deque<uint8_t> rx_fifo_ VMM_GUARDED_BY(mutex_);      // at most rx_capacity() bytes
  bool refill_requested_ VMM_GUARDED_BY(mutex_) = false;    // notifier called, no enqueue yet
  bool queue_emptied_ VMM_GUARDED_BY(mutex_) = false;       // by a polling guest's LSR read

  // Guest output not yet taken by the event loop: at most kOutputBufferCapacity bytes.
  std::deque<uint8_t> output_ VMM_GUARDED_BY(mutex_);
  // Output notifier called; take_output() has not yet found the buffer empty.
  bool drain_requested_ VMM_GUARDED_BY(mutex_) = false;
  uint64_t dropped_output_ VMM_GUARDED_BY(mutex_) = 0;

  // 115200 baud; never 0, earlycon divides by it to probe the baud rate
  uint16_t divisor_ VMM_GUARDED_BY(mutex_) = 1;
  uint8_t ier_ VMM_GUARDED_BY(mutex_) = 0;
  uint8_t lcr_ VMM_GUARDED_BY(mutex_) = 0;
  uint8_t mcr_ VMM_GUARDED_BY(mutex_) = 0;
  uint8_t scr_ VMM_GUARDED_BY(mutex_) = 0;
  uint8_t msr_deltas_ VMM_GUARDED_BY(mutex_) = 0;  // MSR bits 0-3, cleared by reading MSR
  bool fifo_enabled_ VMM_GUARDED_BY(mutex_) = false;
  uint8_t rx_trigger_ VMM_GUARDED_BY(mutex_) = 1;
  bool overrun_ VMM_GUARDED_BY(mutex_) = false;  // LSR OE, cleared by reading LSR
  // THR-empty interrupt condition, cleared by IIR read or THR write
  bool thre_pending_ VMM_GUARDED_BY(mutex_) = false;
  bool line_asserted_ VMM_GUARDED_BY(mutex_) = false;
};

}  // namespace vmm::devices
