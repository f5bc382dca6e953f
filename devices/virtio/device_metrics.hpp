#pragma once

#include <atomic>
#include <cstdint>

namespace vmm::devices::virtio {

// What a device has done, as the control socket's "metrics" command reports it.
struct DeviceMetricsSnapshot {
  uint64_t requests = 0;          // chains completed successfully (packets moved, for a NIC)
  uint64_t bytes = 0;             // their payload bytes, read or written for the guest
  uint64_t errors = 0;            // chains that failed (refused, I/O error, dropped), broken queues
  uint64_t rate_limit_waits = 0;  // times a queue stopped because its rate limit ran dry
};

// A device's counters. The owner thread (the event loop) counts; any thread may read a snapshot,
// so they are relaxed atomics: each counter is exact, the four are not one consistent instant.
class DeviceMetrics {
 public:
  void count_request(uint64_t bytes) {
    requests_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
  }
  void count_error() { errors_.fetch_add(1, std::memory_order_relaxed); }
  void count_rate_limit_wait() { rate_limit_waits_.fetch_add(1, std::memory_order_relaxed); }

  DeviceMetricsSnapshot snapshot() const {
    return {requests_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed),
            errors_.load(std::memory_order_relaxed),
            rate_limit_waits_.load(std::memory_order_relaxed)};
  }

 private:
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> rate_limit_waits_{0};
};

}  // namespace vmm::devices::virtio
