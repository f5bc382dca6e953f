#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>

#include "base/util/event_fd.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/platform_events.hpp"
#include "vmm/machine.hpp"

namespace vmm {

// Records why the machine stops. The first reason wins; later ones (a vCPU noticing the stop, a
// reboot that follows a pvpanic report) are ignored. Signals `fd()` when set, from any thread.
class ExitLatch final : public devices::PlatformEvents {
 public:
  // `on_set` also runs when the reason is recorded (once, on the thread that recorded it, without
  // the latch's lock): it wakes threads that don't watch `fd()`, such as parked vCPUs.
  explicit ExitLatch(std::function<void()> on_set = {}) : on_set_(std::move(on_set)) {}

  void guest_request(devices::GuestRequest request, int code) override;
  void set(MachineExit exit);
  void fail(std::string message);

  std::optional<MachineExit> result() const;
  // Whether a reason is recorded; lock-free, for the vCPU threads' check before each KVM_RUN. It
  // is true before `fd()` is signalled and before `on_set` runs.
  bool is_set() const { return set_.load(); }
  int fd() const { return event_.fd(); }

 private:
  std::function<void()> on_set_;
  mutable Mutex mutex_;
  std::optional<MachineExit> exit_ VMM_GUARDED_BY(mutex_);
  std::atomic<bool> set_{false};
  EventFd event_;
};

}  // namespace vmm
