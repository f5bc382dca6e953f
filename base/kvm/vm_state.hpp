#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "base/util/state_stream.hpp"

namespace vmm::kvm {

// What KVM holds for the VM as a whole that a snapshot must carry: the in-kernel PICs, IOAPIC and
// PIT, and the guest's clock (Vm::save_state and Vm::restore_state move it in and out of KVM).
struct VmState {
  kvm_irqchip pic_master{};  // chip_id KVM_IRQCHIP_PIC_MASTER
  kvm_irqchip pic_slave{};   // chip_id KVM_IRQCHIP_PIC_SLAVE
  kvm_irqchip ioapic{};      // chip_id KVM_IRQCHIP_IOAPIC
  kvm_pit_state2 pit{};
  uint64_t clock_ns = 0;     // the guest's kvmclock (KVM_GET_CLOCK)
  uint64_t realtime_ns = 0;  // the host's CLOCK_REALTIME when clock_ns was read

  void save(StateWriter& out) const;
  // Reads the whole of `in` (the VM's section: trailing bytes are corruption); each irqchip must
  // be the chip its place names, the PIT's flags known ones.
  static VmState load(StateReader& in);
};

}  // namespace vmm::kvm
