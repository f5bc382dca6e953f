#pragma once

#include <chrono>
#include <functional>
#include <utility>

#include "base/event/event_loop.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::devices::testing {

// The DeviceOwner of a single-threaded test (or fuzz target), whose one thread plays both the
// vCPU and the event loop's thread: posted work runs at once, and a vCPU's wait runs the loop
// until the condition holds (a device reset waiting for its I/O), giving up after ~10 s.
class InlineDeviceOwner final : public virtio::DeviceOwner {
 public:
  explicit InlineDeviceOwner(EventLoop& loop) : loop_(loop) {}
  void post(std::function<void()> work) override { work(); }
  bool wait(const std::function<bool()>& done) override {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < give_up) loop_.run_once(10);
    return done();
  }
  void wake() override {}

 private:
  EventLoop& loop_;
};

// Runs `loop` until a round dispatches nothing (at most `rounds` rounds: a device that keeps
// itself busy must not hang the caller). Returns the rounds that did something.
inline int run_until_idle(EventLoop& loop, int rounds = 64) {
  for (int round = 0; round < rounds; ++round) {
    const uint64_t before = loop.dispatched();
    loop.run_once(0);
    if (loop.dispatched() == before) return round;
  }
  return rounds;
}

}  // namespace vmm::devices::testing
