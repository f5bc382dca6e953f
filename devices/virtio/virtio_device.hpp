#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/util/state_stream.hpp"
#include "devices/virtio/device_metrics.hpp"
#include "devices/virtio/queue.hpp"

namespace vmm::devices::virtio {

// Transport-independent feature bits (virtio 1.2, 6).
inline constexpr uint64_t kFeatureRingIndirectDesc = uint64_t{1} << 28;
inline constexpr uint64_t kFeatureRingEventIdx = uint64_t{1} << 29;
inline constexpr uint64_t kFeatureVersion1 = uint64_t{1} << 32;

// Device status bits (virtio 1.2, 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Device IDs (virtio 1.2, 5).
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdConsole = 3;
inline constexpr uint32_t kDeviceIdVsock = 19;

// How a device signals the driver. Implemented by the transport; lock-free and callable from any
// thread (it sets the interrupt status and raises the interrupt).
class DeviceInterrupt {
 public:
  virtual ~DeviceInterrupt() = default;
  // The device added buffers to a used ring (call only when SplitQueue::needs_notification()).
  virtual void signal_used() = 0;
  // The device changed its configuration space.
  virtual void signal_config_change() = 0;
  // The device hit an error it cannot recover from without a reset (a broken queue): sets
  // DEVICE_NEEDS_RESET in the status and raises a configuration-change interrupt.
  virtual void signal_needs_reset() = 0;
};

// The thread that owns the devices (the machine's event loop), as the transport on a vCPU thread
// sees it: the vCPU hands activation and reset over, and waits for a reset to finish without
// holding anything the owner needs.
class DeviceOwner {
 public:
  virtual ~DeviceOwner() = default;
  // Runs `work` on the owner thread soon, in the order posted. Thread-safe.
  virtual void post(std::function<void()> work) = 0;
  // Blocks the calling vCPU thread until `done()` holds (looked at again after each wake()),
  // counting it as parked meanwhile, so pausing and stopping the machine never wait for it.
  // False if the machine is stopping: the caller gives up waiting.
  virtual bool wait(const std::function<bool()>& done) = 0;
  virtual void wake() = 0;
};

// What the device works with once the driver sets DRIVER_OK.
struct Activation {
  uint64_t driver_features;         // as negotiated (a subset of features())
  std::vector<SplitQueue*> queues;  // one per queue_max_sizes() entry; not-ready ones included
  DeviceInterrupt* interrupt;  // used until reset() is called; the transport outlives the device
  // One eventfd per queue, signalled when the driver notifies it (an ioeventfd, or the transport
  // on a QueueNotify write that reached it): the device watches them on its event loop from
  // activate() until reset(), and calls notify() itself. Empty when a test calls notify().
  std::vector<int> notify_fds = {};
};

// A virtio device behind a transport (virtio-mmio today). The transport owns the queues, the
// feature negotiation and the status state machine; the device owns its config space and what it
// does with the buffers.
//
// Threading: one thread owns the device, the event loop it was given. activate(), notify(),
// reset() and debug_state() run there, as do the handlers of every fd the device watches (its
// notify fds, its backend's, its completions'), so the device needs no lock. The transport hands
// the driver's register writes over from vCPU threads (DeviceOwner). vCPU threads call only the
// const methods below that describe the device, which read what was fixed at construction (and
// read_config(), which reads atomics where the config changes).
// Snapshot and restore stand in for the owner thread: quiesce() and save_state() run on the
// thread that paused the machine (its vCPUs and its loop parked: the pause gate orders everything
// the loop did before them), restore_state() on the thread that builds the machine, before its
// loop and vCPUs run.
class VirtioDevice {
 public:
  // Called when reset() has finished: nothing the device started still writes into guest memory.
  using ResetDone = std::function<void()>;

  virtual ~VirtioDevice() = default;

  // Any thread.
  virtual uint32_t device_id() const = 0;
  // Every feature the device offers, including the transport-independent ones it supports
  // (VERSION_1 is mandatory: the transport refuses a driver that does not accept it). Any thread.
  virtual uint64_t features() const = 0;
  // The maximum size of each queue (QueueNumMax), powers of two; the number of queues. Any thread.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // Device-specific configuration space; `offset` is relative to its start. Reads past its end
  // return zeros. No device here lets the driver write it, and all but virtio-net's link status
  // (atomic) is fixed at construction, so any thread may read it without a lock.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;

  // The driver set DRIVER_OK.
  virtual void activate(const Activation& activation) = 0;
  // The driver notified queue `index` (already checked to be < the number of queues). Does a
  // bounded amount of work: what is left is picked up in a later round of the loop.
  virtual void notify(uint16_t index) = 0;
  // The driver wrote 0 to the status, or the machine is unplugging the device: back to the
  // pre-activate state. From this call on the device no longer touches the queues (in-flight
  // chains are discarded: the driver no longer expects them back) and it never blocks the loop
  // waiting for I/O: it calls `done` on its thread, possibly before returning, once the host has
  // stopped writing into guest memory for it. A device destroyed before that waits for its I/O.
  virtual void reset(ResetDone done) = 0;

  // One line on the device's own state (what it waits for, what it dropped), for the log when a
  // machine stops without the guest's consent; empty if there is nothing beyond the queues. On
  // the owner thread, or once it has stopped.
  virtual std::string debug_state() const { return {}; }

  // Snapshot (threading above). Before anything is saved: finishes what the device has under way
  // that a snapshot cannot hold (virtio-blk's requests in flight), completing it as usual (status,
  // used ring, interrupt), and starts nothing new. Throws vmm::Error if it is still under way at
  // `deadline`; the device stays consistent and carries on once the machine resumes.
  virtual void quiesce(std::chrono::steady_clock::time_point /*deadline*/) {}
  // The device's own state beyond the transport's (which holds the queues), of an active device
  // after quiesce(): the chains it holds (SplitQueue::save_chains), what it has staged. Default:
  // none.
  virtual void save_state(StateWriter& /*out*/) const {}
  // Reads what save_state() wrote into a device of the same configuration that the transport has
  // just activated with the restored queues, and tells the driver what the restore changed (a new
  // link, lost connections). Every value is checked: a bad one throws vmm::Error
  // (StateReader::corrupt).
  virtual void restore_state(StateReader& /*in*/) {}

  // The device's counters (device_metrics.hpp). Any thread.
  DeviceMetricsSnapshot metrics() const { return metrics_.snapshot(); }

 protected:
  // Counted by the device on its owner thread.
  DeviceMetrics metrics_;
};

}  // namespace vmm::devices::virtio
