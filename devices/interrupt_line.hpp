#pragma once

#include <cstdint>

namespace vmm::devices {

// One interrupt input of the in-kernel IOAPIC/PIC as a device sees it. A device never knows how
// the line reaches the guest (KVM_IRQ_LINE, an irqfd, or a test double).
class InterruptLine {
 public:
  virtual ~InterruptLine() = default;
  // Drives the line to `asserted` (level semantics, as an ISA device's output pin).
  virtual void set_level(bool asserted) = 0;
  // Raises an edge: assert then deassert.
  virtual void pulse() {
    set_level(true);
    set_level(false);
  }
  virtual uint32_t gsi() const = 0;
};

}  // namespace vmm::devices
