#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/kvm/vm.hpp"
#include "base/memory/guest_memory.hpp"
#include "devices/bus.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "firmware/acpi/description.hpp"
#include "vmm/machine/irqfd_line.hpp"
#include "vmm/machine/pause_gate.hpp"

namespace vmm {

// The machine's event loop as the owner of its virtio devices: a vCPU hands work to it with
// post(), and waits for it (a device reset) at the pause gate, where it counts as parked.
class LoopDeviceOwner final : public devices::virtio::DeviceOwner {
 public:
  LoopDeviceOwner(EventLoop& loop, PauseGate& gate) : loop_(loop), gate_(gate) {}
  void post(std::function<void()> work) override { loop_.post(std::move(work)); }
  bool wait(const std::function<bool()>& done) override { return gate_.wait_as_parked(done); }
  void wake() override { gate_.notify(); }

 private:
  EventLoop& loop_;
  PauseGate& gate_;
};

// One virtio device plugged into the machine: its virtio-mmio window on the MMIO bus, an irqfd
// for its interrupt, and one ioeventfd per queue that turns the guest's QueueNotify write into an
// event for the device on the event loop without a trip through the vCPU thread. The device is
// owned by the loop thread (`owner`); destroying the slot, with the loop and the vCPUs stopped,
// unplugs it: the notifications stop, then the device is reset (its in-flight I/O finishes first).
class VirtioMmioSlot {
 public:
  // Slot `index` sits at layout::kVirtioMmioStart + index * kVirtioMmioStride, interrupt `gsi`.
  VirtioMmioSlot(kvm::Vm& vm, devices::virtio::DeviceOwner& owner, devices::Bus& mmio,
                 const GuestMemory& memory, uint32_t index, uint32_t gsi,
                 std::unique_ptr<devices::virtio::VirtioDevice> device, std::string name);
  ~VirtioMmioSlot();
  VirtioMmioSlot(const VirtioMmioSlot&) = delete;
  VirtioMmioSlot& operator=(const VirtioMmioSlot&) = delete;

  // The DSDT entry a stock kernel's virtio_mmio driver binds to (_HID "LNRO0005").
  acpi::DeviceDescription acpi_description() const;
  const std::string& name() const { return name_; }
  std::string debug_state() const { return transport_->debug_state(); }

  // Snapshot and restore (devices::virtio::MmioTransport's, which say on which thread and when).
  void quiesce(std::chrono::steady_clock::time_point deadline) { transport_->quiesce(deadline); }
  void save_state(StateWriter& out) const { transport_->save_state(out); }
  void restore_state(StateReader& in) { transport_->restore_state(in); }

 private:
  kvm::Vm& vm_;
  const uint32_t index_;
  const uint64_t base_;
  std::string name_;
  IrqfdLine irq_;
  std::shared_ptr<devices::virtio::MmioTransport> transport_;
};

}  // namespace vmm
