#include "vmm/machine/virtio_mmio_slot.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

namespace vmm {

using devices::virtio::MmioTransport;

VirtioMmioSlot::VirtioMmioSlot(kvm::Vm& vm, devices::virtio::DeviceOwner& owner, devices::Bus& mmio,
                               const GuestMemory& memory, uint32_t index, uint32_t gsi,
                               std::unique_ptr<devices::virtio::VirtioDevice> device,
                               std::string name)
    : vm_(vm),
      index_(index),
      base_(layout::kVirtioMmioStart + uint64_t{index} * layout::kVirtioMmioStride),
      name_(std::move(name)),
      irq_(vm, gsi),
      transport_(std::make_shared<MmioTransport>(memory, std::move(device), irq_, owner, name_)) {
  static_assert(MmioTransport::kWindowSize <= layout::kVirtioMmioStride);
  mmio.insert(base_, MmioTransport::kWindowSize, transport_);
  const uint64_t notify_address = base_ + MmioTransport::kQueueNotifyOffset;
  for (uint16_t queue = 0; queue < transport_->queue_count(); ++queue) {
    vm_.register_ioeventfd(transport_->notify_fd(queue), notify_address, 4, false, queue);
  }
  spdlog::debug("{}: virtio-mmio at {:#x}, GSI {}, {} queue(s)", name_, base_, gsi,
                transport_->queue_count());
}

VirtioMmioSlot::~VirtioMmioSlot() {
  const uint64_t notify_address = base_ + MmioTransport::kQueueNotifyOffset;
  for (uint16_t queue = 0; queue < transport_->queue_count(); ++queue) {
    try {
      vm_.unregister_ioeventfd(transport_->notify_fd(queue), notify_address, 4, false, queue);
    } catch (const Error& e) {
      spdlog::warn("{}: queue {}: {}", name_, queue, e.what());
    }
  }
  transport_->shutdown();
}

acpi::DeviceDescription VirtioMmioSlot::acpi_description() const {
  acpi::DeviceDescription description;
  description.name = fmt::format("VR{:02X}", index_);
  description.hid = "LNRO0005";
  description.uid = index_;
  description.mmio = {{base_, static_cast<uint32_t>(MmioTransport::kWindowSize)}};
  description.interrupts = {{irq_.gsi(), false, false}};  // edge-triggered, active high
  return description;
}

}  // namespace vmm
