#include "vmm/machine/exit_latch.hpp"

#include <spdlog/spdlog.h>

namespace vmm {

void ExitLatch::guest_request(devices::GuestRequest request, int code) {
  using devices::GuestRequest;
  MachineExit exit;
  switch (request) {
    case GuestRequest::kPowerOff: exit.reason = MachineExit::Reason::kPowerOff; break;
    case GuestRequest::kReboot: exit.reason = MachineExit::Reason::kReboot; break;
    case GuestRequest::kPanic: exit.reason = MachineExit::Reason::kPanic; break;
    case GuestRequest::kDebugExit:
      exit.reason = MachineExit::Reason::kDebugExit;
      exit.debug_code = code & 0xff;
      break;
  }
  set(std::move(exit));
}

void ExitLatch::set(MachineExit exit) {
  {
    MutexLock lock(mutex_);
    if (exit_) return;
    spdlog::debug("machine stopping: {}", exit.describe());
    exit_ = std::move(exit);
    set_.store(true);
  }
  event_.signal();
  if (on_set_) on_set_();
}

void ExitLatch::fail(std::string message) {
  MachineExit exit;
  exit.reason = MachineExit::Reason::kError;
  exit.message = std::move(message);
  set(std::move(exit));
}

std::optional<MachineExit> ExitLatch::result() const {
  MutexLock lock(mutex_);
  return exit_;
}

}  // namespace vmm
