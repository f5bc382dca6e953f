// The 16550 UART: fuzzer-chosen port accesses (any offset and width, DLAB, FIFO control,
// loopback, interrupt enables) interleaved with host input arriving from the event loop side, the
// refill handshake the device asks for through its notifier, and the event loop taking output
// from the bounded transmit buffer (the drain handshake).
//
// Input: operations (see Op).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "devices/legacy/serial_16550.hpp"
#include "tests/fuzz/port_access.hpp"

namespace vmm::fuzz {
namespace {

using devices::Serial16550;

enum Op : uint8_t {
  kAccess,        // a port access (port_access.hpp)
  kInput,         // u8 n, n bytes of host input
  kInputFlood,    // u16 length: that many bytes of host input at once
  kAnswerRefill,  // the event loop answers the notifier: enqueue_input({})
  kTakeOutput,    // u16 n: the event loop takes up to n bytes of output
  kOpCount,
};

void offer_input(Serial16550& uart, std::span<const uint8_t> bytes) {
  const size_t space = uart.input_space();
  VMM_FUZZ_CHECK(space <= Serial16550::kInputQueueCapacity, "input_space() %zu", space);
  const size_t taken = uart.enqueue_input(bytes);
  VMM_FUZZ_CHECK(taken <= bytes.size(), "took %zu of %zu bytes", taken, bytes.size());
  VMM_FUZZ_CHECK(bytes.size() > space || taken == bytes.size(),
                 "took %zu of %zu bytes with room for %zu", taken, bytes.size(), space);
}

void run(Reader& in) {
  FakeInterruptLine irq;
  Serial16550 uart(irq);
  bool refill_requested = false;
  uart.set_input_notifier([&] { refill_requested = true; });
  bool drain_requested = false;
  // Once per emptied buffer: the loop is never asked twice for the same drain.
  uart.set_output_notifier([&] {
    VMM_FUZZ_CHECK(!drain_requested, "output notifier called again before a drain emptied it");
    drain_requested = true;
  });
  std::vector<uint8_t> taken;
  while (!in.empty()) {
    switch (in.u8() % kOpCount) {
      case kAccess: perform(uart, read_port_access(in, Serial16550::kPortCount)); break;
      case kInput: offer_input(uart, in.bytes(in.u8())); break;
      case kInputFlood: {
        std::vector<uint8_t> bytes(in.u16() * 2u, 'x');
        offer_input(uart, bytes);
        break;
      }
      case kAnswerRefill:
        if (refill_requested) {
          refill_requested = false;
          offer_input(uart, {});
        }
        break;
      case kTakeOutput: {
        taken.resize(in.u16());
        const size_t pending = uart.output_pending();
        VMM_FUZZ_CHECK(pending <= Serial16550::kOutputBufferCapacity, "output_pending() %zu",
                       pending);
        const size_t n = uart.take_output(taken);
        VMM_FUZZ_CHECK(n == std::min(pending, taken.size()), "took %zu of %zu pending", n, pending);
        if (uart.output_pending() == 0) drain_requested = false;
        break;
      }
    }
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
