#include "devices/legacy/serial_16550.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/state_stream.hpp"
#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

using testing::FakeInterruptLine;

// Register offsets and bits as Linux's serial_reg.h names them.
constexpr uint64_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6,
                   kScr = 7;
constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrThre = 0x20, kLsrTemt = 0x40;
constexpr uint8_t kIirNoInt = 0x01;
constexpr uint8_t kMcrLoop = 0x10;

class SerialTest : public ::testing::Test {
 protected:
  uint8_t in(uint64_t port) { return testing::inb(serial, port); }
  void out(uint64_t port, uint8_t value) { testing::outb(serial, port, value); }
  void send(const std::string& text) {
    serial.enqueue_input({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  }
  // Reads RBR while LSR says data is ready, the way Linux's serial8250_rx_chars does.
  std::string drain() {
    std::string received;
    while (in(kLsr)&kLsrDr) received.push_back(static_cast<char>(in(kRbrThr)));
    return received;
  }

  // What the event loop would take from the output buffer now, appended to `output`.
  const std::string& take_output() {
    std::array<uint8_t, 4096> chunk{};
    while (const size_t n = serial.take_output(chunk))
      output.append(chunk.begin(), chunk.begin() + n);
    return output;
  }

  FakeInterruptLine irq;
  std::string output;
  Serial16550 serial{irq};
};

TEST_F(SerialTest, ResetState) {
  EXPECT_EQ(in(kLsr), kLsrThre | kLsrTemt);
  EXPECT_EQ(in(kIirFcr), kIirNoInt);
  EXPECT_EQ(in(kIer), 0);
  EXPECT_EQ(in(kLcr), 0);
  EXPECT_EQ(in(kMcr), 0);
  EXPECT_EQ(in(kMsr), 0xb0);  // DCD, DSR, CTS: a peer is always there
  EXPECT_TRUE(irq.levels.empty());
}

TEST_F(SerialTest, DivisorLatchIsBehindDlab) {
  out(kLcr, 0x80);
  EXPECT_EQ(in(kRbrThr), 1);  // 115200 baud until the guest says otherwise
  EXPECT_EQ(in(kIer), 0);
  out(kRbrThr, 0x0c);
  out(kIer, 0x01);
  EXPECT_EQ(in(kRbrThr), 0x0c);
  EXPECT_EQ(in(kIer), 0x01);
  out(kLcr, 0x03);  // 8N1, DLAB off: the same ports are THR and IER again
  EXPECT_EQ(in(kLcr), 0x03);
  EXPECT_EQ(in(kIer), 0);
  out(kRbrThr, 'x');
  EXPECT_EQ(take_output(), "x");
  out(kLcr, 0x83);
  EXPECT_EQ(in(kRbrThr), 0x0c);
  EXPECT_EQ(in(kIer), 0x01);
}

TEST_F(SerialTest, ScratchRegisterHoldsAnyValue) {
  for (int value : {0x00, 0x55, 0xaa, 0xff}) {
    out(kScr, static_cast<uint8_t>(value));
    EXPECT_EQ(in(kScr), value);
  }
}

TEST_F(SerialTest, IerKeepsOnlyTheFourDefinedBits) {
  out(kIer, 0xff);
  EXPECT_EQ(in(kIer), 0x0f);
}

TEST_F(SerialTest, TransmittedBytesAreBufferedForTheLoopAndLsrStaysEmpty) {
  for (char c : std::string("hello\n")) {
    out(kRbrThr, static_cast<uint8_t>(c));
    EXPECT_EQ(in(kLsr), kLsrThre | kLsrTemt);
  }
  EXPECT_EQ(serial.output_pending(), 6u);
  EXPECT_EQ(take_output(), "hello\n");
  EXPECT_EQ(serial.output_pending(), 0u);
}

TEST_F(SerialTest, FullOutputBufferClearsThreAndTemtUntilTheLoopTakesIt) {
  int notified = 0;
  serial.set_output_notifier([&] { ++notified; });
  size_t sent = 0;
  while (in(kLsr)&kLsrThre) {
    for (size_t i = 0; i < Serial16550::kFifoSize; ++i) {
      out(kRbrThr, static_cast<uint8_t>(sent++));
    }
    ASSERT_LE(sent, Serial16550::kOutputBufferCapacity);
  }
  // THRE and TEMT read clear once less than a FIFO's worth of room is left.
  EXPECT_GT(sent + Serial16550::kFifoSize, Serial16550::kOutputBufferCapacity);
  EXPECT_EQ(in(kLsr) & (kLsrThre | kLsrTemt), 0);
  EXPECT_EQ(notified, 1);  // once, for the first byte into the empty buffer
  EXPECT_EQ(serial.dropped_output(), 0u);

  // Taking a few bytes is not enough room for a FIFO's worth; taking a FIFO's worth is.
  std::array<uint8_t, Serial16550::kFifoSize> chunk{};
  const size_t free_before = Serial16550::kOutputBufferCapacity - sent;
  ASSERT_EQ(serial.take_output(std::span(chunk).first(Serial16550::kFifoSize - free_before - 1)),
            Serial16550::kFifoSize - free_before - 1);
  EXPECT_EQ(in(kLsr) & (kLsrThre | kLsrTemt), 0);
  ASSERT_EQ(serial.take_output(std::span(chunk).first(1)), 1u);
  EXPECT_EQ(in(kLsr), kLsrThre | kLsrTemt);

  // The rest, in order; an empty buffer asks the loop again for the next byte.
  take_output();
  EXPECT_EQ(output.size(), sent - (Serial16550::kFifoSize - free_before));
  out(kRbrThr, 'x');
  EXPECT_EQ(notified, 2);
}

TEST_F(SerialTest, ThreInterruptComesBackWhenTheLoopMakesRoom) {
  out(kIer, 0x02);  // ETBEI, as Linux's start_tx sets it
  ASSERT_EQ(in(kIirFcr), 0x02);
  // An interrupt-driven driver: on each THRE, up to a FIFO's worth without looking at LSR.
  size_t sent = 0;
  while (in(kLsr)&kLsrThre) {
    for (size_t i = 0; i < Serial16550::kFifoSize; ++i) out(kRbrThr, 'a');
    sent += Serial16550::kFifoSize;
  }
  EXPECT_FALSE(irq.level());  // THR is busy: no THRE interrupt
  EXPECT_EQ(in(kIirFcr), kIirNoInt);
  const int edges = irq.rising_edges();

  // Setting ETBEI again while the transmitter is busy raises nothing either.
  out(kIer, 0);
  out(kIer, 0x02);
  EXPECT_FALSE(irq.level());

  std::array<uint8_t, 4096> chunk{};
  ASSERT_EQ(serial.take_output(chunk), chunk.size());
  EXPECT_TRUE(irq.level());  // a fresh edge: the driver's handler runs and sends more
  EXPECT_EQ(irq.rising_edges(), edges + 1);
  EXPECT_EQ(in(kIirFcr), 0x02);
  EXPECT_FALSE(irq.level());
  EXPECT_EQ(serial.dropped_output(), 0u);
  EXPECT_EQ(take_output().size() + chunk.size(), sent);
  EXPECT_EQ(std::count(output.begin(), output.end(), 'a'), std::ssize(output));
}

TEST_F(SerialTest, ByteWrittenIntoAFullBufferIsDroppedAndCounted) {
  // A guest that ignores THRE can't make the buffer grow without bound.
  for (size_t i = 0; i < Serial16550::kOutputBufferCapacity + 10; ++i) out(kRbrThr, 'b');
  EXPECT_EQ(serial.output_pending(), Serial16550::kOutputBufferCapacity);
  EXPECT_EQ(serial.dropped_output(), 10u);
  EXPECT_TRUE(take_output() == std::string(Serial16550::kOutputBufferCapacity, 'b'));
  EXPECT_EQ(in(kLsr), kLsrThre | kLsrTemt);
}

// A vCPU that waits for THRE and the event loop draining at its own pace: every byte arrives, in
// order, and the guest never writes into a full buffer.
TEST_F(SerialTest, OutputThroughAFullBufferLosesAndReordersNothing) {
  constexpr size_t kBytes = 3 * Serial16550::kOutputBufferCapacity + 123;
  std::string sent;
  for (size_t i = 0; i < kBytes; ++i) sent.push_back(static_cast<char>('a' + i * 7 % 26));

  std::mutex mutex;
  std::condition_variable wake;
  bool drain = false;
  serial.set_output_notifier([&] {
    std::lock_guard lock(mutex);
    drain = true;
    wake.notify_one();
  });
  std::atomic<bool> done = false;
  std::atomic<int> busy_seen = 0;
  std::thread guest([&] {
    size_t i = 0;
    while (i < kBytes) {
      if ((in(kLsr)&kLsrThre) == 0) {
        ++busy_seen;
        std::this_thread::yield();
        continue;
      }
      for (size_t n = 0; n < Serial16550::kFifoSize && i < kBytes; ++n) {
        out(kRbrThr, static_cast<uint8_t>(sent[i++]));
      }
    }
    done = true;
  });
  // The loop starts only once the guest has found the buffer full (whatever the two threads'
  // speeds, as under ThreadSanitizer), then takes slowly (small takes, a nap now and then), so
  // the buffer fills again and again.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (busy_seen == 0 && !done && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::array<uint8_t, 100> chunk{};
  while (output.size() < kBytes) {
    {
      std::unique_lock lock(mutex);
      wake.wait_for(lock, std::chrono::milliseconds(1), [&] { return drain; });
      drain = false;
    }
    while (const size_t n = serial.take_output(chunk)) {
      output.append(chunk.begin(), chunk.begin() + n);
      if (output.size() % 5 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    ASSERT_LE(output.size(), kBytes);
  }
  guest.join();
  EXPECT_TRUE(done);
  ASSERT_EQ(output.size(), sent.size());
  const auto [mine, theirs] = std::mismatch(output.begin(), output.end(), sent.begin());
  EXPECT_EQ(mine - output.begin(), std::ssize(output)) << "the first byte out of place";
  EXPECT_EQ(serial.dropped_output(), 0u);
  EXPECT_GT(busy_seen, 0);  // the buffer did fill: the guest waited on THRE
}

TEST_F(SerialTest, LsrReportsDataReadyUntilTheFifoIsRead) {
  out(kIirFcr, 0x01);
  send("ab");
  EXPECT_EQ(in(kLsr), kLsrDr | kLsrThre | kLsrTemt);
  EXPECT_EQ(in(kRbrThr), 'a');
  EXPECT_EQ(in(kLsr)&kLsrDr, kLsrDr);
  EXPECT_EQ(in(kRbrThr), 'b');
  EXPECT_EQ(in(kLsr), kLsrThre | kLsrTemt);
}

TEST_F(SerialTest, IirShowsFifoEnabledBits) {
  out(kIirFcr, 0x01);
  EXPECT_EQ(in(kIirFcr), 0xc0 | kIirNoInt);
  out(kIirFcr, 0x00);
  EXPECT_EQ(in(kIirFcr), kIirNoInt);
}

// The register dance of Linux's autoconfig() and autoconfig_16550a() (8250_port.c); each check is
// the one that would make Linux call the port something other than a 16550A.
TEST_F(SerialTest, PassesLinuxAutoconfigAsA16550A) {
  // IER read/write test.
  out(kIer, 0);
  EXPECT_EQ(in(kIer)&0x0f, 0);
  out(kIer, 0x0f);
  EXPECT_EQ(in(kIer)&0x0f, 0x0f);
  out(kIer, 0);

  // Loopback test: RTS and OUT2 come back as CTS and DCD.
  const uint8_t saved_mcr = in(kMcr);
  out(kMcr, kMcrLoop | 0x0a);
  EXPECT_EQ(in(kMsr)&0xf0, 0x90);
  out(kMcr, saved_mcr);

  // EFR write with LCR = 0xbf lands on FCR; then FIFO detection through IIR bits 6-7.
  out(kLcr, 0xbf);
  out(kIirFcr, 0);
  out(kLcr, 0);
  out(kIirFcr, 0x01);
  EXPECT_EQ(in(kIirFcr) >> 6, 3);

  // No EFR behind LCR = 0x80 or 0xbf (the register reads as IIR, never 0).
  out(kLcr, 0x80);
  EXPECT_NE(in(kIirFcr), 0);
  out(kLcr, 0xbf);
  EXPECT_NE(in(kIirFcr), 0);

  // Not a 16750: no 64-byte FIFO bit, with or without DLAB.
  out(kLcr, 0);
  out(kIirFcr, 0x21);
  EXPECT_EQ(in(kIirFcr)&0xe0, 0xc0);
  out(kLcr, 0x80);
  out(kIirFcr, 0x21);
  EXPECT_EQ(in(kIirFcr)&0xe0, 0xc0);
  out(kLcr, 0);

  // Not an XScale: the UUE bit (IER bit 6) does not stick.
  out(kIer, 0x40);
  EXPECT_EQ(in(kIer)&0x40, 0);
}

TEST_F(SerialTest, LoopbackSendsTransmittedBytesBackAsInput) {
  out(kIirFcr, 0x01);
  out(kMcr, kMcrLoop);
  out(kRbrThr, 'o');
  out(kRbrThr, 'k');
  EXPECT_EQ(take_output(), "");  // nothing leaves the chip in loopback
  EXPECT_EQ(drain(), "ok");
  out(kMcr, 0);
  out(kRbrThr, '!');
  EXPECT_EQ(take_output(), "!");
}

TEST_F(SerialTest, LoopbackIgnoresHostInputUntilItEnds) {
  out(kIirFcr, 0x01);
  out(kMcr, kMcrLoop);
  send("host");
  EXPECT_EQ(in(kLsr)&kLsrDr, 0);
  int notified = 0;
  serial.set_input_notifier([&] { ++notified; });
  out(kMcr, 0);
  EXPECT_EQ(notified, 1);  // the FIFO is empty and input waits: ask the event loop to refill
  serial.enqueue_input({});
  EXPECT_EQ(drain(), "host");
}

TEST_F(SerialTest, LoopbackOverrunSetsOe) {
  out(kMcr, kMcrLoop);  // FIFO off: a one-byte receiver
  out(kRbrThr, '1');
  out(kRbrThr, '2');
  EXPECT_EQ(in(kLsr) & (kLsrOe | kLsrDr), kLsrOe | kLsrDr);
  EXPECT_EQ(in(kLsr)&kLsrOe, 0);  // reading LSR clears OE
  EXPECT_EQ(in(kRbrThr), '1');
}

TEST_F(SerialTest, LoopbackMsrFollowsMcrWithDeltas) {
  out(kMcr, kMcrLoop);
  EXPECT_EQ(in(kMsr), 0x0b);   // status bits dropped: delta CTS, DSR, DCD
  EXPECT_EQ(in(kMsr), 0x00);   // deltas clear on read
  out(kMcr, kMcrLoop | 0x01);  // DTR -> DSR
  EXPECT_EQ(in(kMsr), 0x22);
  out(kMcr, kMcrLoop | 0x02);  // RTS -> CTS
  EXPECT_EQ(in(kMsr), 0x13);
  out(kMcr, kMcrLoop | 0x04);  // OUT1 -> RI
  EXPECT_EQ(in(kMsr), 0x41);
  out(kMcr, kMcrLoop | 0x08);  // OUT2 -> DCD; RI's trailing edge sets TERI
  EXPECT_EQ(in(kMsr), 0x8c);
}

TEST_F(SerialTest, ModemStatusInterruptWhenEnabled) {
  out(kIer, 0x08);
  out(kMcr, kMcrLoop | 0x01);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(in(kIirFcr), 0x00);  // modem status
  in(kMsr);
  EXPECT_FALSE(irq.level());
  EXPECT_EQ(in(kIirFcr), kIirNoInt);
}

TEST_F(SerialTest, ThreInterruptIsAcknowledgedByIirAndRearmedByIer) {
  out(kIer, 0x02);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(in(kIirFcr), 0x02);
  EXPECT_FALSE(irq.level());  // reading IIR acknowledged it
  EXPECT_EQ(in(kIirFcr), kIirNoInt);

  // Linux's UART_BUG_THRE test: clearing and setting ETBEI must raise THRE again.
  out(kIer, 0);
  out(kIer, 0x02);
  EXPECT_EQ(in(kIirFcr), 0x02);
  EXPECT_EQ(irq.rising_edges(), 2);
}

TEST_F(SerialTest, EachTransmittedByteRaisesAFreshEdge) {
  out(kIer, 0x02);
  ASSERT_EQ(irq.rising_edges(), 1);
  // The guest writes without acknowledging through IIR: the line still has to fall and rise
  // per byte, or the edge-triggered IOAPIC never sees the later ones.
  out(kRbrThr, 'a');
  out(kRbrThr, 'b');
  EXPECT_EQ(irq.rising_edges(), 3);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(take_output(), "ab");
}

TEST_F(SerialTest, NoInterruptWithoutEnables) {
  out(kRbrThr, 'a');
  send("x");
  EXPECT_TRUE(irq.levels.empty());
  EXPECT_EQ(in(kIirFcr), kIirNoInt);
}

TEST_F(SerialTest, IirReportsTheHighestPriorityCondition) {
  out(kIirFcr, 0x01);            // FIFO, trigger level 1
  out(kIer, 0x07);               // line status, RX data, THRE
  EXPECT_EQ(in(kIirFcr), 0xc2);  // only THRE so far; this read acknowledges it
  out(kIer, 0x05);
  out(kIer, 0x07);  // THRE pending again
  out(kMcr, kMcrLoop);
  for (int i = 0; i < 17; ++i) out(kRbrThr, static_cast<uint8_t>('a' + i));  // one too many
  EXPECT_EQ(in(kIirFcr), 0xc6);  // overrun beats everything
  in(kLsr);
  EXPECT_EQ(in(kIirFcr), 0xc4);  // then received data
  drain();
  EXPECT_EQ(in(kIirFcr), 0xc2);  // then THRE
  EXPECT_EQ(in(kIirFcr), 0xc1);
  EXPECT_FALSE(irq.level());
}

TEST_F(SerialTest, RxBelowTriggerLevelReportsTimeout) {
  out(kIirFcr, 0x81);  // trigger level 8
  out(kIer, 0x01);
  send("abc");
  EXPECT_EQ(in(kIirFcr), 0xcc);
  send("defgh");
  EXPECT_EQ(in(kIirFcr), 0xc4);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(drain(), "abcdefgh");
  EXPECT_FALSE(irq.level());
}

TEST_F(SerialTest, FcrClearsTheRxFifo) {
  out(kIirFcr, 0x01);
  send("abc");
  out(kIirFcr, 0x03);
  EXPECT_EQ(in(kLsr)&kLsrDr, 0);
}

TEST_F(SerialTest, InputFillsTheFifoAndRefillsOnRequest) {
  int notified = 0;
  serial.set_input_notifier([&] { ++notified; });
  out(kIirFcr, 0x01);
  out(kIer, 0x01);
  const std::string text = "0123456789abcdefghijklmnopqrstuvwxyz!";  // 37 bytes
  send(text);
  EXPECT_EQ(irq.rising_edges(), 1);

  std::string received;
  for (int fill = 0; received.size() < text.size(); ++fill) {
    ASSERT_LT(fill, 3);
    // Data stays ready until the 16-byte FIFO (or the tail) is drained, and not longer.
    const size_t expected = std::min<size_t>(Serial16550::kFifoSize, text.size() - received.size());
    for (size_t i = 0; i < expected; ++i) {
      ASSERT_TRUE(in(kLsr)&kLsrDr) << "byte " << received.size();
      received.push_back(static_cast<char>(in(kRbrThr)));
    }
    EXPECT_FALSE(in(kLsr)&kLsrDr);
    EXPECT_FALSE(irq.level());
    serial.enqueue_input({});  // the event loop answering the notifier
  }
  EXPECT_EQ(received, text);
  EXPECT_EQ(notified, 2);            // once per drained fill that left input waiting
  EXPECT_EQ(irq.rising_edges(), 3);  // one interrupt per fill
}

// A guest that polls LSR.DR with the receive interrupt off takes queued input without waiting for
// the event loop byte by byte; the loop hears once the queue is empty, to feed more.
TEST_F(SerialTest, APollingGuestTakesQueuedInputWithoutTheLoop) {
  int notified = 0;
  serial.set_input_notifier([&] { ++notified; });
  std::string text(1000, 'x');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>('a' + i % 26);
  send(text);
  std::string received;
  while (in(kLsr)&kLsrDr) received.push_back(static_cast<char>(in(kRbrThr)));
  EXPECT_EQ(received, text);
  EXPECT_EQ(notified, 1);
  EXPECT_EQ(serial.input_space(), Serial16550::kInputQueueCapacity);
}

TEST_F(SerialTest, HostQueueIsCappedAndLosesNothing) {
  int notified = 0;
  serial.set_input_notifier([&] { ++notified; });
  out(kIirFcr, 0x01);

  std::vector<uint8_t> data(Serial16550::kInputQueueCapacity + 1000);
  std::iota(data.begin(), data.end(), 0);  // wraps mod 256: a recognisable pattern
  const size_t first = serial.enqueue_input(data);
  EXPECT_EQ(first, Serial16550::kInputQueueCapacity);
  EXPECT_EQ(serial.input_space(), Serial16550::kFifoSize);  // the FIFO took its share

  // The event loop feeds the rest as space frees; the guest drains.
  size_t offered = first;
  std::vector<uint8_t> received;
  while (received.size() < data.size()) {
    while (in(kLsr)&kLsrDr) received.push_back(in(kRbrThr));
    const size_t take = std::min(serial.input_space(), data.size() - offered);
    offered += serial.enqueue_input(std::span<const uint8_t>(data).subspan(offered, take));
    ASSERT_LE(received.size(), data.size());
  }
  EXPECT_EQ(received, data);
  EXPECT_EQ(serial.input_space(), Serial16550::kInputQueueCapacity);
  EXPECT_GT(notified, 0);
}

TEST_F(SerialTest, WideAccessesAreSplitIntoPorts) {
  const uint8_t pair[2] = {0x5a, 0x0f};  // SCR at 7 gets 0x5a, port 8 is outside: dropped
  serial.write(kScr, pair);
  EXPECT_EQ(in(kScr), 0x5a);
  uint8_t word[2] = {};
  serial.read(kLsr, word);  // LSR and MSR in one access
  EXPECT_EQ(word[0], kLsrThre | kLsrTemt);
  EXPECT_EQ(word[1], 0xb0);
  serial.read(kScr, word);
  EXPECT_EQ(word[1], 0xff);
}

TEST_F(SerialTest, ConcurrentGuestAndHostAccessesLoseNothing) {
  constexpr size_t kBytes = 2000;
  std::string input;
  for (size_t i = 0; i < kBytes; ++i) input.push_back(static_cast<char>('a' + i % 26));
  out(kIirFcr, 0x01);

  // The event loop's wakeup, as the machine would wire it to an eventfd.
  std::mutex mutex;
  std::condition_variable wake;
  bool refill = false;
  serial.set_input_notifier([&] {
    std::lock_guard lock(mutex);
    refill = true;
    wake.notify_one();
  });

  std::atomic<bool> done = false;
  std::string received;
  std::thread reader([&] {  // one vCPU: the guest's receive loop
    while (received.size() < kBytes) {
      if ((in(kLsr)&kLsrDr) != 0) received.push_back(static_cast<char>(in(kRbrThr)));
    }
    done = true;
  });
  std::thread writer([&] {  // another vCPU: console output
    for (int i = 0; i < 1000; ++i) out(kRbrThr, 'w');
  });
  EXPECT_EQ(serial.enqueue_input({reinterpret_cast<const uint8_t*>(input.data()), kBytes}), kBytes);
  while (!done) {  // the event loop
    std::unique_lock lock(mutex);
    wake.wait_for(lock, std::chrono::milliseconds(10), [&] { return refill; });
    if (!std::exchange(refill, false)) continue;
    lock.unlock();
    serial.enqueue_input({});
  }
  reader.join();
  writer.join();
  EXPECT_EQ(received, input);
  EXPECT_EQ(take_output(), std::string(1000, 'w'));
}

TEST_F(SerialTest, HostileAccessesDoNotCrash) {
  testing::hammer(serial, Serial16550::kPortCount);
  // Still a working UART afterwards.
  out(kLcr, 0x03);
  out(kMcr, 0);
  out(kScr, 0x42);
  EXPECT_EQ(in(kScr), 0x42);
  take_output();
  output.clear();
  out(kRbrThr, 'z');
  EXPECT_EQ(take_output(), "z");
}

// Snapshot and restore: a UART with the notifiers a machine sets, counting their calls.
struct Uart {
  Uart() {
    device.set_input_notifier([this] { ++refills; });
    device.set_output_notifier([this] { ++drains; });
  }
  uint8_t in(uint64_t port) { return testing::inb(device, port); }
  void out(uint64_t port, uint8_t value) { testing::outb(device, port, value); }
  void print(const std::string& text) {
    for (char c : text) out(kRbrThr, static_cast<uint8_t>(c));
  }
  void send(const std::string& text) {
    device.enqueue_input({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  }
  std::vector<uint8_t> save() const {
    StateWriter writer;
    device.save_state(writer);
    return writer.take();
  }
  void restore(std::span<const uint8_t> state) {
    StateReader reader(state, "serial");
    device.restore_state(reader);
    reader.expect_end();
  }

  FakeInterruptLine irq;
  Serial16550 device{irq};
  int refills = 0;
  int drains = 0;
};

// Every register away from its reset value, every buffer holding something.
void make_busy(Uart& uart) {
  uart.out(kLcr, 0x83);
  uart.out(kRbrThr, 0x0c);  // 9600 baud
  uart.out(kLcr, 0x03);
  uart.out(kIirFcr, 0xc1);          // FIFO on, trigger at 14
  uart.out(kMcr, 0x13);             // loopback, DTR and RTS: modem status deltas
  uart.print("abcdefghijklmnopq");  // 17 bytes into the 16-byte FIFO: an overrun
  uart.out(kMcr, 0x0b);
  uart.out(kScr, 0x5a);
  uart.send("typed ahead");  // queued: the FIFO is full
  uart.print("printed");     // not yet taken by the loop
  uart.out(kIer, 0x0f);
}

// What the guest and the loop see on the same accesses: every value read, then the output taken.
std::vector<int> exercise(Uart& uart) {
  std::vector<int> seen;
  for (uint64_t port : {kIirFcr, kLsr, kIirFcr, kMsr, kMsr, kScr, kLcr, kMcr, kIer}) {
    seen.push_back(uart.in(port));
  }
  for (int fill = 0; fill < 2; ++fill) {
    while (uart.in(kLsr)&kLsrDr) seen.push_back(uart.in(kRbrThr));
    uart.device.enqueue_input({});  // the loop answering the refill notifier
  }
  seen.push_back(uart.in(kIirFcr));  // THRE, acknowledged by this read
  seen.push_back(uart.in(kIirFcr));
  std::array<uint8_t, 64> output{};
  const size_t taken = uart.device.take_output(output);
  seen.insert(seen.end(), output.begin(), output.begin() + static_cast<std::ptrdiff_t>(taken));
  uart.out(kLcr, 0x83);
  seen.push_back(uart.in(kRbrThr));
  seen.push_back(uart.in(kIer));
  return seen;
}

// A restore that threw left the device as constructed: nothing driven, nothing held.
void expect_untouched(Uart& uart) {
  EXPECT_TRUE(uart.irq.levels.empty());
  EXPECT_EQ(uart.refills + uart.drains, 0);
  EXPECT_EQ(uart.device.output_pending(), 0u);
  EXPECT_EQ(uart.device.input_space(), Serial16550::kInputQueueCapacity);
  EXPECT_EQ(uart.in(kLsr), kLsrThre | kLsrTemt);
  EXPECT_EQ(uart.in(kIirFcr), kIirNoInt);
  EXPECT_EQ(uart.in(kMcr), 0);
}

TEST(SerialStateTest, ARestoredUartBehavesAsTheOriginal) {
  Uart original;
  make_busy(original);
  ASSERT_TRUE(original.irq.level());
  const size_t levels_at_snapshot = original.irq.levels.size();
  const int refills_at_snapshot = original.refills;

  Uart copy;
  copy.restore(original.save());
  EXPECT_EQ(copy.irq.levels, std::vector<bool>{true});  // driven to the restored level
  EXPECT_EQ(copy.drains, 1);                            // "printed" waits for the new loop
  EXPECT_EQ(copy.refills, 0);                           // the FIFO is full, nothing owed

  const std::vector<int> expected = exercise(original);
  EXPECT_EQ(exercise(copy), expected);
  const std::string text(expected.begin(), expected.end());
  EXPECT_NE(text.find("abcdefghijklmnop"), std::string::npos);
  EXPECT_NE(text.find("typed ahead"), std::string::npos);
  EXPECT_NE(text.find("printed"), std::string::npos);
  // The same interrupts, edge for edge, and the same refill requests.
  EXPECT_EQ(std::vector<bool>(copy.irq.levels.begin() + 1, copy.irq.levels.end()),
            std::vector<bool>(
                original.irq.levels.begin() + static_cast<std::ptrdiff_t>(levels_at_snapshot),
                original.irq.levels.end()));
  EXPECT_EQ(copy.refills, original.refills - refills_at_snapshot);
}

// The old process's loop was asked for a refill and the snapshot caught it before it answered:
// the new loop is asked again, or the queued input would wait for ever.
TEST(SerialStateTest, RestoreAsksTheNewLoopForARefillTheOldOneOwed) {
  Uart original;
  original.out(kIirFcr, 0x01);
  original.out(kIer, 0x01);
  original.send("0123456789abcdefXYZ");
  while (original.in(kLsr)&kLsrDr) original.in(kRbrThr);
  ASSERT_EQ(original.refills, 1);

  Uart copy;
  copy.restore(original.save());
  EXPECT_EQ(copy.refills, 1);
  EXPECT_EQ(copy.drains, 0);
  EXPECT_EQ(copy.irq.levels, std::vector<bool>{false});
  copy.device.enqueue_input({});
  std::string received;
  while (copy.in(kLsr)&kLsrDr) received.push_back(static_cast<char>(copy.in(kRbrThr)));
  EXPECT_EQ(received, "XYZ");
}

TEST(SerialStateTest, TruncatedStateThrowsAndChangesNothing) {
  Uart original;
  make_busy(original);
  const std::vector<uint8_t> state = original.save();
  for (size_t size = 0; size < state.size(); ++size) {
    Uart copy;
    EXPECT_THROW(copy.restore(std::span(state).first(size)), Error) << size << " bytes";
    expect_untouched(copy);
  }
}

// The saved fields, in order, to build states a device could never have saved.
struct SavedSerial {
  uint16_t divisor = 1;
  uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, msr_deltas = 0;
  uint8_t fifo_enabled = 0, rx_trigger = 1, overrun = 0, thre_pending = 0;
  std::vector<uint8_t> rx_fifo{}, input_queue{}, output{};

  std::vector<uint8_t> bytes() const {
    StateWriter writer;
    for (uint8_t byte : {uint8_t(divisor), uint8_t(divisor >> 8), ier, lcr, mcr, scr, msr_deltas,
                         fifo_enabled, rx_trigger, overrun, thre_pending}) {
      writer.put(byte);
    }
    writer.put_vector(rx_fifo);
    writer.put_vector(input_queue);
    writer.put_vector(output);
    return writer.take();
  }
};

TEST(SerialStateTest, AFreshUartSavesTheFieldsInTheirOrder) {
  EXPECT_EQ(Uart().save(), SavedSerial{}.bytes());
}

TEST(SerialStateTest, OutOfRangeValuesThrowAndChangeNothing) {
  const std::vector<uint8_t> too_much_input(Serial16550::kInputQueueCapacity + 1);
  const std::vector<uint8_t> too_much_output(Serial16550::kOutputBufferCapacity + 1);
  const std::vector<std::pair<std::string, SavedSerial>> cases = {
      {"IER bit 4", {.ier = 0x10}},
      {"MCR bit 5", {.mcr = 0x20}},
      {"MSR status bits as deltas", {.msr_deltas = 0x10}},
      {"a flag of 2", {.overrun = 2}},
      {"trigger 2 with the FIFO on", {.fifo_enabled = 1, .rx_trigger = 2}},
      {"trigger 14 with the FIFO off", {.rx_trigger = 14}},
      {"17 bytes in the FIFO", {.fifo_enabled = 1, .rx_fifo = std::vector<uint8_t>(17)}},
      {"2 bytes in RBR with the FIFO off", {.rx_fifo = {1, 2}}},
      {"too much queued input", {.input_queue = too_much_input}},
      {"too much output", {.output = too_much_output}},
  };
  for (const auto& [name, fields] : cases) {
    Uart copy;
    EXPECT_THROW(copy.restore(fields.bytes()), Error) << name;
    expect_untouched(copy);
  }
  // And at the limits, all is accepted.
  Uart full;
  full.restore(SavedSerial{.fifo_enabled = 1,
                           .rx_trigger = 14,
                           .rx_fifo = std::vector<uint8_t>(Serial16550::kFifoSize),
                           .input_queue = std::vector<uint8_t>(too_much_input.size() - 1),
                           .output = std::vector<uint8_t>(too_much_output.size() - 1)}
                   .bytes());
  EXPECT_EQ(full.in(kLsr), kLsrDr);  // THRE and TEMT clear: the output buffer is full
  EXPECT_EQ(full.drains, 1);
}

}  // namespace
}  // namespace vmm::devices
