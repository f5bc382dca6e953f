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

class Events final : public devices::PlatformEvents {
 public:
  void guest_request(devices::GuestRequest, int) override { ++requests; }
  uint64_t requests = 0;
};

void run(Reader& in) {
  Events events;
  FakeInterruptLine irq;
  // With and without the keyboard IRQ line, as the machine may wire it.
  I8042 controller(events, in.flag() ? &irq : nullptr);
  while (!in.empty()) perform(controller, read_port_access(in, I8042::kPortCount));
}

}  // namespace
}  // namespace vmm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vmm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmm::fuzz::Reader in(data, size);
  vmm::fuzz::run(in);
  return 0;
}
