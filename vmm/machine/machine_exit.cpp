#include <fmt/format.h>

#include "vmm/machine.hpp"

namespace vmm {

int MachineExit::exit_status() const {
  switch (reason) {
    case Reason::kPowerOff: return 0;
    case Reason::kReboot: return kExitStatusReboot;
    case Reason::kPanic: return kExitStatusPanic;
    case Reason::kDebugExit: return debug_code & 0xff;
    case Reason::kTimeout: return kExitStatusTimeout;
    case Reason::kStopped: return kExitStatusStopped;
    case Reason::kError: return kExitStatusError;
  }
  return kExitStatusError;
}

std::string MachineExit::describe() const {
  switch (reason) {
    case Reason::kPowerOff: return "guest powered off";
    case Reason::kReboot: return "guest rebooted";
    case Reason::kPanic: return "guest panicked";
    case Reason::kDebugExit: return fmt::format("guest exited with status {}", debug_code & 0xff);
    case Reason::kTimeout: return "timeout expired";
    case Reason::kStopped: return "stopped by the host";
    case Reason::kError: return message;
  }
  return message;
}

}  // namespace vmm
