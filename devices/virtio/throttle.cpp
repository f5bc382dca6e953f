#include "devices/virtio/throttle.hpp"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

Throttle::Throttle(const RateLimit& limit, DeviceMetrics& metrics)
    : limiter_(limit),
      metrics_(metrics),
      timer_(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) {
  if (!timer_) throw_errno("timerfd_create (a rate limit's timer)");
}

bool Throttle::allows(uint64_t bytes) {
  if (waiting_) return false;
  if (limiter_.limit().unlimited()) return true;  // without reading the clock
  const auto now = RateLimiter::Clock::now();
  if (limiter_.ready(bytes, now)) return true;
  waiting_ = true;
  metrics_.count_rate_limit_wait();
  arm(limiter_.wait_for(bytes, now));
  return false;
}

void Throttle::take(uint64_t bytes) {
  if (limiter_.limit().unlimited()) return;
  limiter_.take(bytes, RateLimiter::Clock::now());
}

void Throttle::watch(WatchedFds& watched, std::function<void()> on_ready) {
  watched.add(timer_.get(), EPOLLIN, [this, on_ready = std::move(on_ready)](uint32_t) {
    uint64_t expirations;
    [[maybe_unused]] const ssize_t n = ::read(timer_.get(), &expirations, sizeof(expirations));
    if (!waiting_) return;  // cancelled after it expired
    waiting_ = false;
    on_ready();
  });
}

void Throttle::set(const RateLimit& limit) {
  limiter_.set(limit, RateLimiter::Clock::now());
  if (waiting_) arm(std::chrono::nanoseconds(1));
}

void Throttle::cancel() {
  // No system call: a reset may run on the main thread as the machine is torn down, whose seccomp
  // filter has no timerfd_settime. A timer left armed is harmless: the device stops watching it
  // at reset, and an expiry after it finds nothing waiting.
  waiting_ = false;
}

void Throttle::arm(RateLimiter::Clock::duration wait) {
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
  itimerspec spec{};
  spec.it_value.tv_sec = nanos / 1'000'000'000;
  spec.it_value.tv_nsec = nanos % 1'000'000'000;
  if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0) {
    throw_errno("timerfd_settime (a rate limit's timer)");
  }
}

}  // namespace vmm::devices::virtio
