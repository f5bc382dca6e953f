#include "vmm/machine/virtio_mmio_slot.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

namespace vmm {

using devices::virtio::MmioTransport;

VirtioMmioSlot::VirtioMmioSlot(kvm::Vm& vm, EventLoop& loop, devices::Bus& mmio,
                               const GuestMemory& memory, uint32_t index, uint32_t gsi,
                               std::unique_ptr<devices::virtio::VirtioDevice> device,
                               std::string name)
    : vm_(vm),
      loop_(loop),
      index_(index),
      base_(layout::kVirtioMmioStart + uint64_t{index} * layout::kVirtioMmioStride),
      name_(std::move(name)),
      irq_(vm, gsi),
      transport_(std::make_shared<MmioTransport>(memory, std::move(device), irq_, name_)) {
  static_assert(MmioTransport::kWindowSize <= layout::kVirtioMmioStride);
  mmio.insert(base_, MmioTransport::kWindowSize, transport_);
  const uint64_t notify_address = base_ + MmioTransport::kQueueNotifyOffset;
  for (uint16_t queue = 0; queue < transport_->queue_count(); ++queue) {
    auto notifier = std::make_unique<EventFd>();
    vm_.register_ioeventfd(notifier->fd(), notify_address, 4, false, queue);
    EventFd* raw = notifier.get();
    notifiers_.push_back(std::move(notifier));
    loop_.add(raw->fd(), EPOLLIN, [this, raw, queue](uint32_t) {
      raw->consume();
      transport_->queue_notify(queue);
    });
  }
  spdlog::debug("{}: virtio-mmio at {:#x}, GSI {}, {} queue(s)", name_, base_, gsi,
                notifiers_.size());
}

VirtioMmioSlot::~VirtioMmioSlot() {
  const uint64_t notify_address = base_ + MmioTransport::kQueueNotifyOffset;
  for (size_t queue = 0; queue < notifiers_.size(); ++queue) {
    const int fd = notifiers_[queue]->fd();
    try {
      loop_.remove(fd);
      vm_.unregister_ioeventfd(fd, notify_address, 4, false, queue);
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
