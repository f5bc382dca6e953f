#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/memory/layout.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/state_stream.hpp"
#include "base/util/thread_annotations.hpp"
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
// Threading, the two sides:
// - vCPU threads read and write the registers, under registers_mutex_, which nothing else takes
//   and which is never held across a call into the device. At DRIVER_OK the transport posts the
//   activation to the device's owner thread (DeviceOwner); at status 0 it posts the reset and
//   waits, as virtio-mmio requires, until the device reports it done, counting as parked. A
//   QueueNotify write that reaches the transport signals the queue's notify eventfd, which the
//   device watches. InterruptStatus, InterruptAck and ConfigGeneration are atomics: no lock.
// - The owner thread (the event loop) owns the device and the SplitQueues: activation, reset and
//   everything the device does.
// - Snapshot and restore (below) stand in for the owner thread: a snapshot on the thread that
//   paused the machine (the vCPUs and the loop parked), a restore on the thread that builds it.
class MmioTransport final : public BusDevice, private DeviceInterrupt {
 public:
  static constexpr uint64_t kWindowSize = layout::kVirtioMmioStride;
  // Where the machine registers ioeventfds (4-byte write, datamatch = queue index).
  static constexpr uint64_t kQueueNotifyOffset = 0x50;
  static constexpr uint64_t kConfigOffset = 0x100;
  static constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
  static constexpr uint32_t kVersion = 2;
  static constexpr uint32_t kVendorId = 0x00564d4d;  // "MMV\0": vmm's own, no PCI vendor behind it

  // `memory`, `irq` and `owner` must outlive the transport. `name` is for logs ("virtio-blk
  // vda"). `irq` is edge-triggered (the machine passes an irqfd-backed line), so every interrupt
  // is a pulse().
  MmioTransport(const GuestMemory& memory, std::unique_ptr<VirtioDevice> device, InterruptLine& irq,
                DeviceOwner& owner, std::string name);
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;
  // As shutdown().
  ~MmioTransport() override;

  // vCPU threads.
  void read(uint64_t offset, std::span<uint8_t> data) override VMM_EXCLUDES(registers_mutex_);
  void write(uint64_t offset, std::span<const uint8_t> data) override
      VMM_EXCLUDES(registers_mutex_);

  // The eventfd the driver's notifications of queue `index` signal: the machine points an
  // ioeventfd at it, and the device watches it once active.
  int notify_fd(uint16_t index) const { return notifiers_.at(index)->fd(); }
  // As the machine unplugs the device, with its event loop no longer running and the vCPUs
  // stopped: resets the device if it is active. Its in-flight I/O is waited for by its
  // destructor. Idempotent.
  void shutdown();

  uint16_t queue_count() const { return static_cast<uint16_t>(queues_.size()); }
  VirtioDevice& device() { return *device_; }
  // The Status register as the driver reads it.
  uint32_t status() const VMM_EXCLUDES(registers_mutex_);
  // Status, interrupt status, each queue's and the device's state, on one line (for logs). On
  // the owner thread, or once it has stopped.
  std::string debug_state() const VMM_EXCLUDES(registers_mutex_);

  // Snapshot, of a paused machine, on the thread that paused it. First, on every device before
  // anything of the machine is saved (its completions raise interrupts, which the saved interrupt
  // controllers must hold): VirtioDevice::quiesce, which throws if the device's work is still
  // under way at `deadline`.
  void quiesce(std::chrono::steady_clock::time_point deadline);
  // Every register, InterruptStatus, NEEDS_RESET, the config generation, whether the device is
  // active, the queues, then the device's own state (VirtioDevice::save_state). A reset under way
  // is saved as such and completed by the restore.
  void save_state(StateWriter& out) const VMM_EXCLUDES(registers_mutex_);
  // Restore, into a transport fresh from construction with the same kind of device, on the thread
  // that builds the machine, before its loop and vCPUs run (and after its interrupt controllers
  // are restored: a pending interrupt is raised again). Checks every value (vmm::Error via
  // StateReader::corrupt, and the device's own errors): a bad one leaves the transport to be
  // destroyed, not used. A device that was active is activated again with the restored queues,
  // directly (it registers its fds with the loop), given its own state, and notified on every
  // queue once the loop runs (the old process's pending notifications are gone). The caller
  // checks that `in` ends there.
  void restore_state(StateReader& in) VMM_EXCLUDES(registers_mutex_);

 private:
  // What the driver wrote to a queue's registers.
  struct QueueRegisters {
    uint32_t size;  // as written: checked when the queue is made ready
    uint64_t desc_table = 0;
    uint64_t avail_ring = 0;
    uint64_t used_ring = 0;
    bool ready = false;  // QueueReady, set once the registers passed SplitQueue::check
  };

  uint32_t read_register(uint64_t offset) VMM_REQUIRES(registers_mutex_);
  void write_register(uint64_t offset, uint32_t value) VMM_REQUIRES(registers_mutex_);
  // Returns true if the driver asked for a reset, which the caller carries out without the lock.
  bool write_status(uint32_t value) VMM_REQUIRES(registers_mutex_);
  void write_queue_ready(uint32_t value) VMM_REQUIRES(registers_mutex_);
  void write_queue_notify(uint32_t index) VMM_REQUIRES(registers_mutex_);
  // The selected queue if it exists and its registers may still be written, else nullptr.
  QueueRegisters* writable_queue(const char* what) VMM_REQUIRES(registers_mutex_);
  QueueConfig queue_config(const QueueRegisters& registers) const VMM_REQUIRES(registers_mutex_);
  // The queues' configurations from their registers (not ready: QueueConfig{}), for activation.
  std::vector<QueueConfig> queue_configs() const VMM_REQUIRES(registers_mutex_);
  // DRIVER_OK: hands the activation to the owner thread.
  void post_activation() VMM_REQUIRES(registers_mutex_);
  // Status 0, on the vCPU thread that wrote it.
  void reset_and_wait() VMM_EXCLUDES(registers_mutex_);
  // The registers as a reset leaves them.
  void reset_registers() VMM_REQUIRES(registers_mutex_);
  // restore_state()'s checks of the registers it read.
  void check_restored_registers(const StateReader& in) const VMM_REQUIRES(registers_mutex_);

  // The owner thread.
  void activate_device(uint64_t driver_features, const std::vector<QueueConfig>& queues);
  // The Activation of the device over queues_ as they are.
  Activation activation(uint64_t driver_features);
  void reset_device();
  void finish_reset();

  // DeviceInterrupt: atomics only, no lock.
  void signal_used() override;
  void signal_config_change() override;
  void signal_needs_reset() override;

  const GuestMemory& memory_;
  const std::unique_ptr<VirtioDevice> device_;
  InterruptLine& irq_;
  DeviceOwner& owner_;
  const std::string name_;
  const uint64_t device_features_;
  const std::vector<uint16_t> queue_max_sizes_;
  std::vector<std::unique_ptr<EventFd>> notifiers_;  // one per queue

  // The owner thread's.
  std::vector<std::unique_ptr<SplitQueue>> queues_;
  bool activated_ = false;

  mutable Mutex registers_mutex_;
  std::vector<QueueRegisters> queue_registers_ VMM_GUARDED_BY(registers_mutex_);
  // The bits the driver set (NEEDS_RESET lives in needs_reset_).
  uint32_t driver_status_ VMM_GUARDED_BY(registers_mutex_) = 0;
  uint32_t device_features_sel_ VMM_GUARDED_BY(registers_mutex_) = 0;
  uint32_t driver_features_sel_ VMM_GUARDED_BY(registers_mutex_) = 0;
  uint64_t driver_features_ VMM_GUARDED_BY(registers_mutex_) = 0;
  // It accepted a feature above bit 63 (none offered).
  bool driver_features_beyond_64_ VMM_GUARDED_BY(registers_mutex_) = false;
  uint32_t queue_sel_ VMM_GUARDED_BY(registers_mutex_) = 0;
  // A vCPU is waiting for the device's reset: other writes are ignored meanwhile.
  bool resetting_ VMM_GUARDED_BY(registers_mutex_) = false;

  // Set by the owner thread when the device's reset is done; read by the waiting vCPU.
  std::atomic<bool> reset_done_{false};
  // Set by the device from any thread.
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<bool> needs_reset_{false};
  std::atomic<uint32_t> config_generation_{0};
};

}  // namespace vmm::devices::virtio
