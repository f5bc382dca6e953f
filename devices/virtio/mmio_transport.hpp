#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/memory/layout.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_line.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::devices::virtio {

// The virtio-mmio transport (virtio 1.2, 4.2), "modern" register layout (Version 2): one 4 KiB
// window per device, registers below 0x100, the device's config space from 0x100.
//
// It owns the device's queues, the feature negotiation and the status state machine, and drives a
// VirtioDevice through them. The guest is hostile: a driver that breaks the spec's rules gets its
// access ignored (logged at debug), a queue it sets up badly sets DEVICE_NEEDS_RESET; nothing it
// does crashes the host.
//
// Threading: register accesses (vCPU threads) and queue_notify() (event loop) are serialised by a
// mutex held across the device calls they make. The DeviceInterrupt side, called by the device
// from any thread (possibly while a vCPU holds that mutex waiting in device->reset()), touches
// atomics only.
class MmioTransport final : public BusDevice, private DeviceInterrupt {
 public:
  static constexpr uint64_t kWindowSize = layout::kVirtioMmioStride;
  // Where the machine registers ioeventfds (4-byte write, datamatch = queue index).
  static constexpr uint64_t kQueueNotifyOffset = 0x50;
  static constexpr uint64_t kConfigOffset = 0x100;
  static constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
  static constexpr uint32_t kVersion = 2;
  static constexpr uint32_t kVendorId = 0x00564d4d;  // "MMV\0": vmm's own, no PCI vendor behind it

  // `memory` must outlive the transport. `name` is for logs ("virtio-blk vda"). `irq` must
  // outlive the transport; it is edge-triggered (the machine passes an irqfd-backed line), so
  // every interrupt is a pulse().
  MmioTransport(const GuestMemory& memory, std::unique_ptr<VirtioDevice> device, InterruptLine& irq,
                std::string name);
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;
  // Resets the device if it is active, so that it stops using the queues before they go.
  ~MmioTransport() override;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The guest notified queue `index` (its ioeventfd fired; event loop thread). Ignored (logged at
  // debug) if the index is out of range or the device is not active. A QueueNotify write that
  // reaches write() because no ioeventfd matched it is handled the same way.
  void queue_notify(uint32_t index);
  // Resets the device if it is active (waiting for its in-flight work), as the machine unplugs
  // it; notifications and register accesses must have stopped. Idempotent.
  void shutdown();

  uint16_t queue_count() const { return static_cast<uint16_t>(queues_.size()); }
  VirtioDevice& device() { return *device_; }
  // The Status register as the driver reads it.
  uint32_t status() const;
  // Status, interrupt status, each queue's and the device's state, on one line (for logs).
  std::string debug_state() const;

 private:
  // What the driver wrote to a queue's registers, applied by QueueReady=1.
  struct QueueRegisters {
    uint32_t size;  // as written: checked when the queue is made ready
    uint64_t desc_table = 0;
    uint64_t avail_ring = 0;
    uint64_t used_ring = 0;
  };

  uint32_t read_register(uint64_t offset);
  void write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  void write_queue_ready(uint32_t value);
  // The selected queue if it exists and its registers may still be written, else nullptr.
  QueueRegisters* writable_queue(const char* what);
  void notify_locked(uint32_t index);
  void activate_device();
  // Back to the state after construction (status 0).
  void reset_locked();

  // DeviceInterrupt: atomics only, no lock.
  void signal_used() override;
  void signal_config_change() override;
  void signal_needs_reset() override;

  const GuestMemory& memory_;
  const std::unique_ptr<VirtioDevice> device_;
  InterruptLine& irq_;
  const std::string name_;
  const uint64_t device_features_;
  std::vector<std::unique_ptr<SplitQueue>> queues_;

  mutable std::mutex mutex_;
  // Guarded by mutex_.
  std::vector<QueueRegisters> queue_registers_;
  uint32_t driver_status_ = 0;  // the bits the driver set (NEEDS_RESET lives in needs_reset_)
  bool activated_ = false;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  bool driver_features_beyond_64_ = false;  // it accepted a feature above bit 63 (none offered)
  uint32_t queue_sel_ = 0;

  // Set by the device from any thread.
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<bool> needs_reset_{false};
  std::atomic<uint32_t> config_generation_{0};
};

}  // namespace vmm::devices::virtio
