// The C API (vmm/vmm.h) over the C++ one: every entry point catches everything, turns it into a
// vmm_status and keeps the message for vmm_last_error().
#include "vmm/vmm.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "base/util/thread_annotations.hpp"
#include "vmm/machine.hpp"
#include "vmm/machine/control_protocol.hpp"
#include "vmm/machine_config.hpp"

#ifndef VMM_LIBRARY_VERSION
#error "VMM_LIBRARY_VERSION must be defined by the build"
#endif

struct vmm_config {
  vmm::MachineConfig config;
  // The last option set that describes the guest itself ("--cpus"): a restore takes those from
  // the snapshot, and refuses a config that sets one rather than ignore it.
  const char* guest_option = nullptr;
};

struct vmm_machine {
  std::unique_ptr<vmm::Machine> machine;
  // The exit, once a wait has seen it; its message is what vmm_exit_info points into.
  vmm::Mutex mutex;
  std::optional<vmm::MachineExit> exit VMM_GUARDED_BY(mutex);
  std::string exit_message VMM_GUARDED_BY(mutex);
  // What vmm_machine_metrics last returned.
  std::string metrics_json VMM_GUARDED_BY(mutex);
};

namespace {

thread_local std::string last_error;

// Never throws: a message that can't be stored (out of memory) is replaced by a short one.
vmm_status set_error(vmm_status status, const char* message) noexcept {
  try {
    last_error = message;
  } catch (...) {
    last_error.clear();
  }
  return status;
}

template <typename... Args>
vmm_status error(vmm_status status, fmt::format_string<Args...> format, Args&&... args) {
  return set_error(status, fmt::format(format, std::forward<Args>(args)...).c_str());
}

// Runs `body`, turning anything it throws into a status: nothing crosses into C.
template <typename Body>
vmm_status guarded(const char* function, Body&& body) noexcept {
  try {
    return body(function);
  } catch (const std::bad_alloc&) {
    return set_error(VMM_ENOMEM, "out of memory");
  } catch (const std::exception& e) {
    return set_error(VMM_EFAIL, e.what());
  } catch (...) {
    try {
      return error(VMM_EFAIL, "{}: unexpected exception", function);
    } catch (...) {
      return set_error(VMM_EFAIL, "unexpected exception");
    }
  }
}

vmm_state to_c(vmm::MachineState state) {
  switch (state) {
    case vmm::MachineState::kCreated: return VMM_STATE_CREATED;
    case vmm::MachineState::kRunning: return VMM_STATE_RUNNING;
    case vmm::MachineState::kPaused: return VMM_STATE_PAUSED;
    case vmm::MachineState::kStopped: return VMM_STATE_STOPPED;
  }
  return VMM_STATE_STOPPED;
}

vmm_exit_reason to_c(vmm::MachineExit::Reason reason) {
  using Reason = vmm::MachineExit::Reason;
  switch (reason) {
    case Reason::kPowerOff: return VMM_EXIT_POWEROFF;
    case Reason::kReboot: return VMM_EXIT_REBOOT;
    case Reason::kPanic: return VMM_EXIT_PANIC;
    case Reason::kDebugExit: return VMM_EXIT_DEBUG_EXIT;
    case Reason::kTimeout: return VMM_EXIT_TIMEOUT;
    case Reason::kStopped: return VMM_EXIT_STOPPED;
    case Reason::kError: return VMM_EXIT_ERROR;
    case Reason::kCommandExit: break;  // the C API has no MachineConfig::command
  }
  return VMM_EXIT_ERROR;
}

// Applies `change` to a copy of the config and keeps the copy only if it passes the checks
// validate_config() can make on it now (the kernel is checked by vmm_machine_create: setters
// may come in any order). `change` returns VMM_OK or an error it has already reported.
template <typename Change>
vmm_status update(const char* function, vmm_config* config, Change&& change) noexcept {
  return guarded(function, [&](const char*) {
    if (config == nullptr) return error(VMM_EINVAL, "{}: config is NULL", function);
    vmm::MachineConfig next = config->config;
    if (const vmm_status status = change(next, function); status != VMM_OK) return status;
    vmm::MachineConfig probe = next;
    if (probe.kernel_path.empty()) probe.kernel_path = "(set later)";
    try {
      vmm::validate_config(probe);
    } catch (const vmm::Error& e) {
      return set_error(VMM_EINVAL, e.what());
    }
    config->config = std::move(next);
    return VMM_OK;
  });
}

// update() for an option that describes the guest itself (`option`, as the vmm command spells it).
template <typename Change>
vmm_status update_guest(const char* function, const char* option, vmm_config* config,
                        Change&& change) noexcept {
  const vmm_status status = update(function, config, std::forward<Change>(change));
  if (status == VMM_OK) config->guest_option = option;
  return status;
}

// A console in `mode`, with nothing left of the previous one.
vmm::SerialConfig console(vmm::SerialConfig::Mode mode) {
  vmm::SerialConfig serial;
  serial.mode = mode;
  return serial;
}

vmm_status null_argument(const char* function, const char* name) {
  return error(VMM_EINVAL, "{}: {} is NULL", function, name);
}

// Appends a disk to `next`, for vmm_config_add_disk and vmm_config_add_disk_snapshot.
vmm_status add_disk(const char* function, vmm::MachineConfig& next, const char* path,
                    bool read_only, const char* serial, vmm::DiskConfig::Snapshot snapshot) {
  if (path == nullptr) return null_argument(function, "path");
  vmm::DiskConfig disk;
  disk.path = path;
  disk.read_only = read_only;
  disk.snapshot = snapshot;
  disk.serial = serial == nullptr ? "" : serial;
  next.disks.push_back(std::move(disk));
  return VMM_OK;
}

// Runs `body` (a call into the machine) if the machine is in one of `allowed` states. The C++ API
// throws vmm::Error for a call in the wrong state as for any failure; the state tells them apart
// (another thread, or the guest, may change it between the check and the call).
template <typename Body>
vmm_status in_state(const char* function, vmm_machine* machine,
                    std::initializer_list<vmm::MachineState> allowed, const char* requirement,
                    Body&& body) noexcept {
  return guarded(function, [&](const char*) {
    if (machine == nullptr) return null_argument(function, "machine");
    const auto allows = [&](vmm::MachineState state) {
      return std::find(allowed.begin(), allowed.end(), state) != allowed.end();
    };
    const vmm::MachineState before = machine->machine->state();
    if (!allows(before)) {
      return error(VMM_ESTATE, "{}: the machine is {} ({})", function, state_name(before),
                   requirement);
    }
    try {
      body(*machine->machine);
    } catch (const vmm::Error& e) {
      const vmm::MachineState now = machine->machine->state();
      return error(allows(now) ? VMM_EFAIL : VMM_ESTATE, "{}: {}", function, e.what());
    }
    return VMM_OK;
  });
}

// What went wrong in Machine::create once the config passed validate_config(): the KVM device
// (messages start with its path), another input named by its option ("--kernel /x: ..."), or
// something else.
vmm_status classify_create_error(const vmm::MachineConfig& config, const std::string& message) {
  if (message.rfind(config.kvm_device + ":", 0) == 0) return VMM_EKVM;
  if (message.rfind("--", 0) == 0) return VMM_EINVAL;
  return VMM_EFAIL;
}

// What went wrong in Machine::restore: as for create, and a file of the snapshot that messages
// name by its path (the memory file) is a bad snapshot too.
vmm_status classify_restore_error(const char* dir, const vmm::MachineConfig& config,
                                  const std::string& message) {
  const vmm_status status = classify_create_error(config, message);
  return status == VMM_EFAIL && message.rfind(dir, 0) == 0 ? VMM_EINVAL : status;
}

vmm::RateLimitConfig to_config(const vmm_rate_limit& limit) {
  return {limit.bytes_per_second, limit.bytes_burst, limit.ops_per_second, limit.ops_burst};
}

}  // namespace

extern "C" {

const char* vmm_version(void) {
  return VMM_LIBRARY_VERSION;
}

const char* vmm_last_error(void) {
  return last_error.c_str();
}

vmm_config* vmm_config_new(void) {
  try {
    return new vmm_config();
  } catch (...) {
    set_error(VMM_ENOMEM, "out of memory");
    return nullptr;
  }
}

void vmm_config_free(vmm_config* config) {
  delete config;
}

vmm_status vmm_config_set_kernel(vmm_config* config, const char* path) {
  return update_guest(__func__, "--kernel", config,
                      [&](vmm::MachineConfig& next, const char* function) {
                        if (path == nullptr) return null_argument(function, "path");
                        if (*path == '\0') return error(VMM_EINVAL, "--kernel: the path is empty");
                        next.kernel_path = path;
                        return VMM_OK;
                      });
}

vmm_status vmm_config_set_initrd(vmm_config* config, const char* path) {
  return update_guest(__func__, "--initrd", config, [&](vmm::MachineConfig& next, const char*) {
    next.initrd_path = path == nullptr ? "" : path;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_cmdline(vmm_config* config, const char* cmdline) {
  return update_guest(__func__, "--cmdline", config,
                      [&](vmm::MachineConfig& next, const char* function) {
                        if (cmdline == nullptr) return null_argument(function, "cmdline");
                        next.cmdline = cmdline;
                        return VMM_OK;
                      });
}

vmm_status vmm_config_set_append(vmm_config* config, const char* text) {
  return update_guest(__func__, "--append", config, [&](vmm::MachineConfig& next, const char*) {
    next.append = text == nullptr ? "" : text;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_modules(vmm_config* config, const char* dir) {
  return update_guest(__func__, "--modules", config, [&](vmm::MachineConfig& next, const char*) {
    next.modules_dir = dir == nullptr ? "" : dir;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_build_initramfs(vmm_config* config, bool build) {
  return update_guest(__func__, "--modules", config, [&](vmm::MachineConfig& next, const char*) {
    next.build_initramfs = build;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_cpus(vmm_config* config, uint32_t cpus) {
  return update_guest(__func__, "--cpus", config, [&](vmm::MachineConfig& next, const char*) {
    next.cpus = cpus;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_memory_bytes(vmm_config* config, uint64_t bytes) {
  return update_guest(__func__, "--memory", config, [&](vmm::MachineConfig& next, const char*) {
    next.memory_bytes = bytes;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_timeout(vmm_config* config, uint32_t seconds) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.timeout_seconds = seconds;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_seccomp(vmm_config* config, bool enabled) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.seccomp = enabled;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_debug_exit(vmm_config* config, bool enabled) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.debug_exit = enabled;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_kvm_device(vmm_config* config, const char* path) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (path == nullptr) return null_argument(function, "path");
    if (*path == '\0') return error(VMM_EINVAL, "{}: the path is empty", function);
    next.kvm_device = path;
    return VMM_OK;
  });
}

vmm_status vmm_config_add_disk(vmm_config* config, const char* path, bool read_only,
                               const char* serial) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    return add_disk(function, next, path, read_only, serial, vmm::DiskConfig::Snapshot::kOff);
  });
}

vmm_status vmm_config_add_disk_snapshot(vmm_config* config, const char* path, const char* serial,
                                        vmm_disk_snapshot snapshot) {
  // A C caller may pass any int: read it as one, since loading a C++ enum outside its values is
  // undefined.
  static_assert(sizeof(snapshot) == sizeof(int));
  int kind = 0;
  std::memcpy(&kind, &snapshot, sizeof(kind));
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    switch (kind) {
      case VMM_DISK_SNAPSHOT_FILE:
        return add_disk(function, next, path, false, serial, vmm::DiskConfig::Snapshot::kFile);
      case VMM_DISK_SNAPSHOT_MEMORY:
        return add_disk(function, next, path, false, serial, vmm::DiskConfig::Snapshot::kMemory);
      default: break;
    }
    return error(VMM_EINVAL,
                 "{}: snapshot {} is neither VMM_DISK_SNAPSHOT_FILE nor VMM_DISK_SNAPSHOT_MEMORY",
                 function, kind);
  });
}

vmm_status vmm_config_add_net(vmm_config* config, const char* tap, const char* mac) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (tap == nullptr) return null_argument(function, "tap");
    vmm::NetConfig net;
    net.tap = tap;
    if (mac != nullptr) {
      net.mac = vmm::parse_mac(mac);
      if (!net.mac) {
        return error(VMM_EINVAL, "--net tap={}: mac={} is not a MAC address (52:54:00:12:34:56)",
                     tap, mac);
      }
    }
    next.nets.push_back(std::move(net));
    return VMM_OK;
  });
}

vmm_status vmm_config_set_disk_rate_limit(vmm_config* config, size_t index,
                                          const vmm_rate_limit* limit) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (limit == nullptr) return null_argument(function, "limit");
    if (index >= next.disks.size()) {
      return error(VMM_EINVAL, "{}: no disk {} (the config has {})", function, index,
                   next.disks.size());
    }
    next.disks[index].rate_limit = to_config(*limit);
    return VMM_OK;
  });
}

vmm_status vmm_config_set_net_rate_limits(vmm_config* config, size_t index,
                                          const vmm_rate_limit* rx, const vmm_rate_limit* tx) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (rx == nullptr) return null_argument(function, "rx");
    if (tx == nullptr) return null_argument(function, "tx");
    if (index >= next.nets.size()) {
      return error(VMM_EINVAL, "{}: no NIC {} (the config has {})", function, index,
                   next.nets.size());
    }
    next.nets[index].rx_rate_limit = to_config(*rx);
    next.nets[index].tx_rate_limit = to_config(*tx);
    return VMM_OK;
  });
}

vmm_status vmm_config_set_vsock(vmm_config* config, uint32_t cid, const char* uds_path) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (uds_path == nullptr) return null_argument(function, "uds_path");
    // 0-2 are the hypervisor, the loopback and the host; -1 is VMADDR_CID_ANY.
    if (cid < 3 || cid == UINT32_MAX) {
      return error(VMM_EINVAL, "--vsock cid={}: reserved (a guest CID is 3 to {})", cid,
                   UINT32_MAX - 1);
    }
    if (*uds_path == '\0') return error(VMM_EINVAL, "--vsock: needs a socket path");
    next.vsock = vmm::VsockConfig{.guest_cid = cid, .uds_path = uds_path};
    return VMM_OK;
  });
}

vmm_status vmm_config_set_api_socket(vmm_config* config, const char* path) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.api_socket = path == nullptr ? "" : path;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_console_stdio(vmm_config* config) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.serial = console(vmm::SerialConfig::Mode::kStdio);
    return VMM_OK;
  });
}

vmm_status vmm_config_set_console_none(vmm_config* config) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char*) {
    next.serial = console(vmm::SerialConfig::Mode::kNone);
    return VMM_OK;
  });
}

vmm_status vmm_config_set_console_file(vmm_config* config, const char* path) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (path == nullptr) return null_argument(function, "path");
    next.serial = console(vmm::SerialConfig::Mode::kFile);
    next.serial.path = path;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_console_fd(vmm_config* config, int fd) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (fd < 0) return error(VMM_EINVAL, "{}: fd {} is not a file descriptor", function, fd);
    next.serial = console(vmm::SerialConfig::Mode::kFd);
    next.serial.fd = fd;
    return VMM_OK;
  });
}

vmm_status vmm_config_set_console_callback(vmm_config* config, vmm_console_fn fn, void* user) {
  return update(__func__, config, [&](vmm::MachineConfig& next, const char* function) {
    if (fn == nullptr) return null_argument(function, "fn");
    next.serial = console(vmm::SerialConfig::Mode::kCallback);
    next.serial.callback = [fn, user](std::span<const uint8_t> bytes) {
      fn(bytes.data(), bytes.size(), user);
    };
    return VMM_OK;
  });
}

vmm_status vmm_machine_create(const vmm_config* config, vmm_machine** out) {
  if (out != nullptr) *out = nullptr;
  return guarded(__func__, [&](const char* function) {
    if (out == nullptr) return null_argument(function, "out");
    if (config == nullptr) return null_argument(function, "config");
    try {
      vmm::validate_config(config->config);
    } catch (const vmm::Error& e) {
      return set_error(VMM_EINVAL, e.what());
    }
    auto machine = std::make_unique<vmm_machine>();
    try {
      machine->machine = vmm::Machine::create(config->config);
    } catch (const vmm::Error& e) {
      return set_error(classify_create_error(config->config, e.what()), e.what());
    }
    *out = machine.release();
    return VMM_OK;
  });
}

void vmm_machine_destroy(vmm_machine* machine) {
  try {
    delete machine;
  } catch (...) {
    // A destructor that throws has already stopped everything it could; C can't be told more.
  }
}

vmm_status vmm_machine_start(vmm_machine* machine) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    const vmm::MachineState state = machine->machine->state();
    if (state != vmm::MachineState::kCreated) {
      return error(VMM_ESTATE, "{}: the machine is {} (only a created machine starts)", function,
                   state_name(state));
    }
    // Failing to start is a failure, whatever state it leaves the machine in.
    try {
      machine->machine->start();
    } catch (const vmm::Error& e) {
      return error(VMM_EFAIL, "{}: {}", function, e.what());
    }
    return VMM_OK;
  });
}

vmm_status vmm_machine_wait(vmm_machine* machine, int64_t timeout_ms) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (timeout_ms < -1) {
      return error(VMM_EINVAL, "{}: timeout_ms {} (want -1 or at least 0)", function, timeout_ms);
    }
    if (machine->machine->state() == vmm::MachineState::kCreated) {
      return error(VMM_ESTATE, "{}: the machine was never started", function);
    }
    std::optional<std::chrono::milliseconds> timeout;
    if (timeout_ms >= 0) timeout = std::chrono::milliseconds(timeout_ms);
    std::optional<vmm::MachineExit> exit = machine->machine->wait(timeout);
    if (!exit) {
      return error(VMM_ETIMEOUT, "{}: the machine is still {} after {} ms", function,
                   state_name(machine->machine->state()), timeout_ms);
    }
    const vmm::MutexLock lock(machine->mutex);
    if (!machine->exit) {
      machine->exit_message = exit->describe();
      machine->exit = std::move(exit);
    }
    return VMM_OK;
  });
}

vmm_status vmm_machine_run(vmm_machine* machine) {
  if (const vmm_status status = vmm_machine_start(machine); status != VMM_OK) return status;
  return vmm_machine_wait(machine, -1);
}

vmm_status vmm_machine_pause(vmm_machine* machine) {
  return in_state(__func__, machine, {vmm::MachineState::kRunning, vmm::MachineState::kPaused},
                  "only a running machine pauses", [](vmm::Machine& m) { m.pause(); });
}

vmm_status vmm_machine_resume(vmm_machine* machine) {
  return in_state(__func__, machine, {vmm::MachineState::kPaused, vmm::MachineState::kRunning},
                  "only a paused machine resumes", [](vmm::Machine& m) { m.resume(); });
}

vmm_status vmm_machine_stop(vmm_machine* machine) {
  return in_state(__func__, machine,
                  {vmm::MachineState::kCreated, vmm::MachineState::kRunning,
                   vmm::MachineState::kPaused, vmm::MachineState::kStopped},
                  "", [](vmm::Machine& m) { m.stop(); });
}

vmm_status vmm_machine_state(const vmm_machine* machine, vmm_state* out) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (out == nullptr) return null_argument(function, "out");
    *out = to_c(machine->machine->state());
    return VMM_OK;
  });
}

vmm_status vmm_machine_exit_info(vmm_machine* machine, vmm_exit_info* out) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (out == nullptr) return null_argument(function, "out");
    const vmm::MachineState state = machine->machine->state();
    if (state != vmm::MachineState::kStopped) {
      return error(VMM_ESTATE, "{}: the machine is {} (it has not stopped)", function,
                   state_name(state));
    }
    // A stopped machine's wait() returns its exit at once; nobody may have called it yet.
    if (const vmm_status status = vmm_machine_wait(machine, 0); status != VMM_OK) return status;
    const vmm::MutexLock lock(machine->mutex);
    *out = vmm_exit_info{.reason = to_c(machine->exit->reason),
                         .exit_status = machine->exit->exit_status(),
                         .debug_code = machine->exit->debug_code,
                         .message = machine->exit_message.c_str()};
    return VMM_OK;
  });
}

vmm_status vmm_machine_send_console_input(vmm_machine* machine, const uint8_t* bytes, size_t len) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (bytes == nullptr && len != 0) return null_argument(function, "bytes");
    if (len != 0) machine->machine->send_console_input(std::span<const uint8_t>(bytes, len));
    return VMM_OK;
  });
}

vmm_status vmm_machine_set_disk_rate_limit(vmm_machine* machine, size_t index,
                                           const vmm_rate_limit* limit) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (limit == nullptr) return null_argument(function, "limit");
    try {
      machine->machine->set_disk_rate_limit(index, to_config(*limit));
    } catch (const vmm::Error& e) {
      return error(VMM_EINVAL, "{}: {}", function, e.what());
    }
    return VMM_OK;
  });
}

vmm_status vmm_machine_set_net_rate_limits(vmm_machine* machine, size_t index,
                                           const vmm_rate_limit* rx, const vmm_rate_limit* tx) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (rx == nullptr) return null_argument(function, "rx");
    if (tx == nullptr) return null_argument(function, "tx");
    try {
      machine->machine->set_net_rate_limits(index, to_config(*rx), to_config(*tx));
    } catch (const vmm::Error& e) {
      return error(VMM_EINVAL, "{}: {}", function, e.what());
    }
    return VMM_OK;
  });
}

vmm_status vmm_machine_metrics(vmm_machine* machine, const char** json) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (json == nullptr) return null_argument(function, "json");
    std::string line = vmm::metrics_line(machine->machine->metrics());
    const vmm::MutexLock lock(machine->mutex);
    machine->metrics_json = std::move(line);
    *json = machine->metrics_json.c_str();
    return VMM_OK;
  });
}

vmm_status vmm_machine_snapshot(vmm_machine* machine, const char* dir, bool stay_paused) {
  return guarded(__func__, [&](const char* function) {
    if (machine == nullptr) return null_argument(function, "machine");
    if (dir == nullptr) return null_argument(function, "dir");
    if (*dir == '\0') return error(VMM_EINVAL, "{}: dir is empty", function);
    return in_state(function, machine, {vmm::MachineState::kRunning, vmm::MachineState::kPaused},
                    "only a running or paused machine is snapshotted",
                    [&](vmm::Machine& m) { m.snapshot(dir, stay_paused); });
  });
}

vmm_status vmm_machine_restore(const char* dir, const vmm_config* config, vmm_machine** out) {
  if (out != nullptr) *out = nullptr;
  return guarded(__func__, [&](const char* function) {
    if (out == nullptr) return null_argument(function, "out");
    if (dir == nullptr) return null_argument(function, "dir");
    if (*dir == '\0') return error(VMM_EINVAL, "--restore: the path is empty");
    const vmm_config defaults{};
    const vmm_config& choices = config == nullptr ? defaults : *config;
    if (choices.guest_option != nullptr) {
      return error(VMM_EINVAL, "--restore {}: {} comes from the snapshot; leave it out", dir,
                   choices.guest_option);
    }
    auto machine = std::make_unique<vmm_machine>();
    try {
      machine->machine = vmm::Machine::restore(vmm::restore_config(dir, choices.config));
    } catch (const vmm::Error& e) {
      return set_error(classify_restore_error(dir, choices.config, e.what()), e.what());
    }
    *out = machine.release();
    return VMM_OK;
  });
}

}  // extern "C"
