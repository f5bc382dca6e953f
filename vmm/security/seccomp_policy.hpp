#pragma once

#include <seccomp.h>

#include <cstdint>
#include <vector>

namespace vmm::security {

// The kinds of thread vmm runs once a machine is set up; each gets an allow-list of its own.
enum class ThreadKind {
  kVcpu,           // KVM_RUN and the synchronous PIO/MMIO exits (device registers, activation)
  kEventLoop,      // `vmm-loop`: device work, console input, the timeout, stopping the vCPUs
  kControlSocket,  // `vmm-api`: the --api-socket server (status, pause, resume, stop)
  kDiskWorker,     // a thread-pool disk engine's worker: blocking reads, writes, flushes
  kMain,           // the vmm command's main thread after start(): waits, then tears down
};

inline constexpr ThreadKind kAllThreadKinds[] = {ThreadKind::kVcpu, ThreadKind::kEventLoop,
                                                 ThreadKind::kControlSocket,
                                                 ThreadKind::kDiskWorker, ThreadKind::kMain};

// "vCPU", "event loop", ...: how reports name the thread.
const char* thread_kind_name(ThreadKind kind);

// One allowed system call. Several rules for one call are alternatives (any may match); within a
// rule every argument comparison must hold. Calls without a rule trap (seccomp_filter.hpp).
struct SyscallRule {
  int syscall;                     // the native number (SCMP_SYS(name))
  std::vector<scmp_arg_cmp> args;  // empty: any arguments
  uint32_t action = SCMP_ACT_ALLOW;
};

// What a thread of `kind` may do once it runs.
std::vector<SyscallRule> seccomp_policy(ThreadKind kind);

}  // namespace vmm::security
