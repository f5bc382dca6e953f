#pragma once

#include <spdlog/spdlog.h>

#include "base/kvm/vm.hpp"
#include "base/util/error.hpp"
#include "base/util/event_fd.hpp"
#include "devices/interrupt_line.hpp"

namespace vmm {

// An edge-triggered interrupt into the in-kernel IOAPIC through an irqfd: raising it is one
// eventfd write, from any thread, with no ioctl and no lock (what virtio devices signal
// completions with).
class IrqfdLine final : public devices::InterruptLine {
 public:
  IrqfdLine(kvm::Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {
    vm_.register_irqfd(event_.fd(), gsi_);
  }
  ~IrqfdLine() override {
    try {
      vm_.unregister_irqfd(event_.fd(), gsi_);
    } catch (const Error& e) {
      spdlog::warn("GSI {}: {}", gsi_, e.what());
    }
  }
  IrqfdLine(const IrqfdLine&) = delete;
  IrqfdLine& operator=(const IrqfdLine&) = delete;

  // An irqfd injects edges only: asserting the line raises one, deasserting it does nothing.
  void set_level(bool asserted) override {
    if (asserted) event_.signal();
  }
  void pulse() override { event_.signal(); }
  uint32_t gsi() const override { return gsi_; }

 private:
  kvm::Vm& vm_;
  uint32_t gsi_;
  EventFd event_;
};

}  // namespace vmm
