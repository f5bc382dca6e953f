#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

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

// What the device works with once the driver sets DRIVER_OK.
struct Activation {
  uint64_t driver_features;         // as negotiated (a subset of features())
  std::vector<SplitQueue*> queues;  // one per queue_max_sizes() entry; not-ready ones included
  DeviceInterrupt* interrupt;       // valid until reset() returns
};

// A virtio device behind a transport (virtio-mmio today). The transport owns the queues, the
// feature negotiation and the status state machine; the device owns its config space and what it
// does with the buffers.
//
// Threading: the transport calls activate(), reset(), read_config() and write_config() from vCPU
// threads and notify() from the event loop thread, never two at once for one device (it holds its
// lock around each call). A device that completes work from elsewhere (an I/O completion handler
// on the event loop) takes its own lock, and makes reset() wait for or disown that work: after
// reset() returns the device must not touch the queues it was given.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual uint32_t device_id() const = 0;
  // Every feature the device offers, including the transport-independent ones it supports
  // (VERSION_1 is mandatory: the transport refuses a driver that does not accept it).
  virtual uint64_t features() const = 0;
  // The maximum size of each queue (QueueNumMax), powers of two; the number of queues.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;

  // Device-specific configuration space; `offset` is relative to its start. Reads past its end
  // return zeros, writes to read-only fields are ignored.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;

  // The driver set DRIVER_OK.
  virtual void activate(const Activation& activation) = 0;
  // The driver notified queue `index` (already checked to be < the number of queues).
  virtual void notify(uint16_t index) = 0;
  // The driver wrote 0 to the status, or the machine is shutting down: back to the pre-activate
  // state. In-flight chains are discarded (the driver no longer expects them back).
  virtual void reset() = 0;

  // One line on the device's own state (what it waits for, what it dropped), for the log when a
  // machine stops without the guest's consent; empty if there is nothing beyond the queues.
  virtual std::string debug_state() const { return {}; }
};

}  // namespace vmm::devices::virtio
