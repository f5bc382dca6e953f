#pragma once

#include <memory>
#include <string>

#include "vmm/machine_config.hpp"

namespace vmm {

// Why a machine stopped, and the status the vmm process exits with for it.
struct MachineExit {
  enum class Reason {
    kPowerOff,   // guest ACPI poweroff: status 0
    kReboot,     // guest reboot or reset: status 3
    kPanic,      // guest panic reported through pvpanic: status 4
    kDebugExit,  // test guest wrote V to the debug-exit port: status V
    kTimeout,    // the configured timeout expired: status 124
    kError,      // the VMM failed or the guest could not be run: status 1
  };
  Reason reason = Reason::kError;
  int debug_code = 0;   // kDebugExit
  std::string message;  // kError: what went wrong

  int exit_status() const;
  std::string describe() const;
};

inline constexpr int kExitStatusError = 1;
inline constexpr int kExitStatusUsage = 2;
inline constexpr int kExitStatusReboot = 3;
inline constexpr int kExitStatusPanic = 4;
inline constexpr int kExitStatusTimeout = 124;

// A virtual machine assembled from a validated config: KVM VM, guest memory, vCPUs, devices,
// firmware tables and the loaded kernel.
class Machine {
 public:
  // Throws vmm::Error (a std::runtime_error) with a one-line message if anything can't be set up.
  static std::unique_ptr<Machine> create(const MachineConfig& config);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Starts the vCPUs and runs until the guest stops, the timeout expires or an error occurs.
  // Call once.
  MachineExit run();

 private:
  struct Impl;
  explicit Machine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmm
