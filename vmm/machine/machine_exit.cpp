#include <fmt/format.h>

#include "vmm/machine.hpp"

namespace vmm {

int MachineExit::exit_status() const {
  if (ran_command && reason != Reason::kCommandExit) return kExitStatusNoCommandStatus;
  switch (reason) {
    case Reason::kPowerOff: return 0;
    case Reason::kReboot: return kExitStatusReboot;
    case Reason::kPanic: return kExitStatusPanic;
    case Reason::kDebugExit: return debug_code & 0xff;
    case Reason::kTimeout: return kExitStatusTimeout;
    case Reason::kStopped: return kExitStatusStopped;
    case Reason::kError: return kExitStatusError;
    case Reason::kCommandExit: return debug_code & 0xff;
  }
  return kExitStatusError;
}

std::string MachineExit::describe() const {
  if (ran_command && reason != Reason::kCommandExit) {
    return "the command's exit status never came: " + describe_reason();
  }
  return describe_reason();
}

std::string MachineExit::describe_reason() const {
  switch (reason) {
    case Reason::kPowerOff: return "guest powered off";
    case Reason::kReboot: return "guest rebooted";
    case Reason::kPanic: return "guest panicked";
    case Reason::kDebugExit: return fmt::format("guest exited with status {}", debug_code & 0xff);
    case Reason::kTimeout: return "timeout expired";
    case Reason::kStopped: return "stopped by the host";
    case Reason::kError: return message;
    case Reason::kCommandExit:
      return fmt::format("the command exited with status {}", debug_code & 0xff);
  }
  return message;
}

}  // namespace vmm
