#pragma once

#include <cstdint>
#include <functional>

#include "base/util/token_bucket.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/device_metrics.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::virtio {

// A device's rate limiter on one direction (a disk's queue, a NIC's receive or transmit side) and
// the timer that wakes the device once the tokens for what waits are there. A device asks before
// each operation; when the answer is no, the operation waits (its chain stays with the device, as
// the next to go) and nothing more is tried until the timer fires. Nothing is dropped.
//
// Threading: on the device's owner thread (the event loop), like the device. The limiter's state is
// not saved in a snapshot: a restored device starts with full buckets.
class Throttle {
 public:
  // Creates the timer (a timerfd): at construction, where opening fds is allowed.
  Throttle(const RateLimit& limit, DeviceMetrics& metrics);

  // Whether an operation of `bytes` may go now; take() it when it goes. If not, arms the timer for
  // when it may, counts a rate-limit wait, and says no until the timer has fired.
  bool allows(uint64_t bytes);
  void take(uint64_t bytes);
  bool waiting() const { return waiting_; }

  // Watches the timer through `watched` (from the device's activation to its reset): when it
  // fires, the wait is over and `on_ready` runs.
  void watch(WatchedFds& watched, std::function<void()> on_ready);
  // A live change: a device that waits tries again at once, under the new limit.
  void set(const RateLimit& limit);
  const RateLimit& limit() const { return limiter_.limit(); }
  // The device is reset: nothing waits any more.
  void cancel();

 private:
  void arm(RateLimiter::Clock::duration wait);

  RateLimiter limiter_;
  DeviceMetrics& metrics_;
  UniqueFd timer_;
  bool waiting_ = false;
};

}  // namespace vmm::devices::virtio
