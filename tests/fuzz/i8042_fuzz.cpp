// The i8042 PS/2 controller: fuzzer-chosen port accesses (commands, their data bytes, controller
// RAM, the output port, keyboard bytes), any offset and width.
//
// Input: port accesses (port_access.hpp), back to back.

#include <cstdint>

#include "devices/legacy/i8042.hpp"
#include "tests/fuzz/port_access.hpp"

namespace vmm::fuzz {
namespace {

using devices::I8042;

void run(Reader& in) {
  FakePlatformEvents events;
  FakeInterruptLine irq;
  // With and without the keyboard IRQ line, as the machine may wire it.
  I8042 controller(events, in.flag() ? &irq : nullptr);
  while (!in.empty()) perform(controller, read_port_access(in, I8042::kPortCount));
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
