#pragma once

#include <cstdint>
#include <optional>

#include "base/kvm/kvm.hpp"
#include "base/kvm/vm_state.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::kvm {

// A KVM virtual machine file descriptor and the VM-wide ioctls.
class Vm {
 public:
  static Vm create(const Kvm& kvm);

  int fd() const { return fd_.get(); }
  void set_user_memory_region(uint32_t slot, uint64_t guest_address, uint64_t size,
                              void* host_address);
  void set_tss_address(uint64_t address);
  void set_identity_map_address(uint64_t address);
  // In-kernel LAPICs, IOAPIC and PIC, and the PIT.
  void create_irqchip();
  void create_pit2();
  // Drives GSI `irq` to `level` (KVM_IRQ_LINE).
  void set_irq_line(uint32_t irq, bool level);
  // Guest writes to [address, address+length) signal `event_fd` without leaving the kernel; with
  // `datamatch`, only writes of that value do (virtio-mmio's QueueNotify carries the queue index).
  void register_ioeventfd(int event_fd, uint64_t address, uint32_t length, bool pio,
                          std::optional<uint64_t> datamatch = std::nullopt);
  void unregister_ioeventfd(int event_fd, uint64_t address, uint32_t length, bool pio,
                            std::optional<uint64_t> datamatch = std::nullopt);
  // A write to `event_fd` injects an edge on `gsi`.
  void register_irqfd(int event_fd, uint32_t gsi);
  void unregister_irqfd(int event_fd, uint32_t gsi);
  // The guest's kvmclock in nanoseconds (KVM_GET_CLOCK / KVM_SET_CLOCK, KVM_CAP_ADJUST_CLOCK):
  // saved at a pause and restored at the resume, so the guest sees no time pass in between.
  uint64_t clock() const;
  void set_clock(uint64_t nanoseconds);

  // The PICs, IOAPIC, PIT and clock, with the machine paused.
  VmState save_state() const;
  // Puts `state` back into a fresh VM with its irqchip and PIT (before its vCPUs' states), the
  // clock `clock_advance_ns` (the real time since the save) ahead of the saved one, so the guest's
  // clock jumps forward as after a suspend.
  void restore_state(const VmState& state, uint64_t clock_advance_ns);

 private:
  kvm_clock_data clock_data() const;

  explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vmm::kvm
