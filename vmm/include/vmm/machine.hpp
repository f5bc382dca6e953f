#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/machine_config.hpp"

namespace vmm {

// Why a machine stopped, and the status the vmm process exits with for it.
struct MachineExit {
  enum class Reason {
    kPowerOff,     // guest ACPI poweroff: status 0
    kReboot,       // guest reboot or reset: status 3
    kPanic,        // guest panic reported through pvpanic: status 4
    kDebugExit,    // test guest wrote V to the debug-exit port: status V
    kTimeout,      // the configured timeout expired: status 124
    kStopped,      // the host stopped it (Machine::stop(), the control socket's stop): status 5
    kError,        // the VMM failed or the guest could not be run: status 1
    kCommandExit,  // MachineConfig::command finished: its status (debug_code)
  };
  Reason reason = Reason::kError;
  int debug_code = 0;  // kDebugExit, kCommandExit
  // The machine ran a MachineConfig::command: any other reason than kCommandExit means its status
  // never came, which exits with kExitStatusNoCommandStatus whatever the reason.
  bool ran_command = false;
  std::string message;  // kError: what went wrong

  int exit_status() const;
  std::string describe() const;

 private:
  std::string describe_reason() const;
};

inline constexpr int kExitStatusError = 1;
inline constexpr int kExitStatusUsage = 2;
inline constexpr int kExitStatusReboot = 3;
inline constexpr int kExitStatusPanic = 4;
inline constexpr int kExitStatusStopped = 5;
inline constexpr int kExitStatusTimeout = 124;
// `vmm run`: the command's status never came (a panic, a timeout, a failure to start it): what
// docker run and env(1) use for "the runner failed", and vmm says why on stderr.
inline constexpr int kExitStatusNoCommandStatus = 125;

enum class MachineState {
  kCreated,  // assembled, not started
  kRunning,
  kPaused,   // vCPUs parked outside KVM_RUN, device work held, guest clock stopped
  kStopped,  // finished: wait() has (or will at once return) the MachineExit
};

// What a machine's guest has done so far, for an operator looking for a misbehaving guest
// (Machine::metrics, the control socket's "metrics"). Each counter is exact; together they are not
// one instant. Counters start at 0 in a restored machine.
struct MachineMetrics {
  struct Device {
    // As the config names it: disk0, net0 (in their order), vsock, console, fs/TAG (a share),
    // vhost-user0 (in --vhost-user's order).
    std::string name;
    uint64_t requests = 0;          // completed successfully (packets both ways, for a NIC)
    uint64_t bytes = 0;             // their payload (a NIC's frames without the virtio header)
    uint64_t errors = 0;            // refused, failed or dropped requests, broken queues
    uint64_t rate_limit_waits = 0;  // times the device stopped for its rate limit
  };
  struct Vcpu {
    uint32_t id = 0;
    // Exits to vmm by KVM's reason ("io", "mmio", "intr", "shutdown", ...): a guest spinning on
    // a port or an MMIO register shows here. Exits KVM handles itself (hlt) are not seen.
    std::map<std::string, uint64_t> exits;
  };
  std::vector<Device> devices;
  std::vector<Vcpu> vcpus;
  // The event loop's longest handler call, and the fd it was for (-1: none yet): a device that
  // holds the loop delays every other.
  std::chrono::microseconds longest_handler{0};
  int longest_handler_fd = -1;
  std::chrono::milliseconds uptime{0};  // wall time since start(), paused time included
};

// A virtual machine assembled from a validated config: KVM VM, guest memory, vCPUs, devices,
// firmware tables and the loaded kernel.
//
// Every method may be called from any thread, and several machines may run in one process. A
// machine runs on threads of its own (one per vCPU and one for its event loop); destroying it
// stops it if needed and releases every thread, fd and mapping it holds.
class Machine {
 public:
  // Throws vmm::Error (a std::runtime_error) with a one-line message naming the bad input if
  // anything can't be set up.
  static std::unique_ptr<Machine> create(const MachineConfig& config);
  // A machine that continues the guest of a snapshot where it stopped (kCreated: start() runs
  // it). Its RAM is mapped copy-on-write from the snapshot's memory file, so it takes the same
  // time for any RAM size, and every machine restored from one snapshot shares the pages none of
  // them wrote. The guest's clock jumps forward by the time since the snapshot, as after a
  // suspend. Throws vmm::Error (one line) and starts nothing for a snapshot from another vmm
  // version or CPU, a corrupt or truncated file, or a disk of the wrong size.
  static std::unique_ptr<Machine> restore(const RestoreConfig& config);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Starts the guest and returns. Throws vmm::Error unless the machine is kCreated.
  void start();
  // Waits until the machine stops, for at most `timeout` (forever without one); nullopt if it is
  // still running (or was never started) when the time is up.
  std::optional<MachineExit> wait(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  // start() and wait() in one: what the vmm command does.
  MachineExit run();

  // Parks every vCPU outside KVM_RUN and holds device work; returns once they are parked. The
  // guest's clock (kvmclock) stops while paused, so the guest does not see the pause as lost
  // time. Throws vmm::Error unless the machine is kRunning (pausing a paused machine is a no-op).
  void pause();
  // Continues a paused machine. Throws vmm::Error unless it is kPaused or kRunning.
  void resume();
  // Stops the machine (MachineExit::Reason::kStopped unless it already stopped for another
  // reason); returns at once, wait() tells when it is done. No-op once stopped.
  void stop();

  // Writes a snapshot of the guest to directory `path` (created; it must not hold one already):
  // manifest.json, the guest's RAM (a sparse file: holes where the guest never wrote) and the
  // state of every vCPU and device. The machine is paused for it, once its disk requests in
  // flight have completed, and resumes afterwards unless `stay_paused` (or it was paused before).
  // The disks are not copied: restore with the same disk content (stay paused, or snapshot disks).
  // Throws vmm::Error naming the file unless the machine is running or paused.
  void snapshot(const std::string& path, bool stay_paused = false);

  MachineState state() const;
  // The config it was created with (or restored from), with the rate limits as they are now: a
  // copy, as another thread may change those.
  MachineConfig config() const;
  // Bytes for the guest's console (COM1) input, e.g. from a library user whose console is a
  // callback. Bytes beyond what the UART's input queue holds wait until the guest reads.
  void send_console_input(std::span<const uint8_t> bytes);
  // MachineConfig::command: asks the guest's init to send `signal` to the command's process group
  // (what vmm run does with the first Ctrl-C). No-op for a machine without a command, or once it
  // has stopped.
  void signal_command(int signal);
  // The guest's counters so far (MachineMetrics); cheap, any state.
  MachineMetrics metrics() const;
  // Changes a rate limit of the running machine (MachineConfig's are the first ones): disk
  // `index`'s, or NIC `index`'s receive and transmit limits; config() shows them from then on. The
  // device takes it between two of its event loop's handlers; a guest waiting for the old limit
  // tries again at once. Throws vmm::Error for an index out of range.
  void set_disk_rate_limit(size_t index, const RateLimitConfig& limit);
  void set_net_rate_limits(size_t index, const RateLimitConfig& rx, const RateLimitConfig& tx);

 private:
  struct Impl;
  explicit Machine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vmm
