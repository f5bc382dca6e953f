#pragma once

#include "base/kvm/vm.hpp"
#include "devices/interrupt_line.hpp"

namespace vmm {

// An ISA interrupt line into the in-kernel PIC/IOAPIC, driven with KVM_IRQ_LINE.
class KvmIrqLine final : public devices::InterruptLine {
 public:
  KvmIrqLine(kvm::Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  void set_level(bool asserted) override { vm_.set_irq_line(gsi_, asserted); }
  uint32_t gsi() const override { return gsi_; }

 private:
  kvm::Vm& vm_;
  uint32_t gsi_;
};

}  // namespace vmm
