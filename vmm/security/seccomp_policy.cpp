#include "vmm/security/seccomp_policy.hpp"

#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <initializer_list>

#include "base/kvm/ioctl.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define VMM_SECCOMP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VMM_SECCOMP_ASAN 1
#endif
#endif

namespace vmm::security {

namespace {

class PolicyBuilder {
 public:
  // Any arguments (once: several groups may need the same call).
  PolicyBuilder& allow(std::initializer_list<int> syscalls) {
    for (int syscall : syscalls) {
      const bool listed = std::any_of(rules_.begin(), rules_.end(), [syscall](const auto& rule) {
        return rule.syscall == syscall && rule.args.empty();
      });
      if (!listed) rules_.push_back({syscall, {}});
    }
    return *this;
  }
  // Only when argument `arg` equals one of `values`.
  PolicyBuilder& allow_arg(int syscall, unsigned arg, std::initializer_list<uint64_t> values) {
    for (uint64_t value : values) {
      rules_.push_back({syscall, {scmp_arg_cmp{arg, SCMP_CMP_EQ, value, 0}}});
    }
    return *this;
  }
  // Only ioctl requests in `requests`, on whatever fd.
  PolicyBuilder& allow_ioctls(std::initializer_list<uint64_t> requests) {
    return allow_arg(SCMP_SYS(ioctl), 1, requests);
  }
  // Only when argument `arg` has none of the bits in `mask` set.
  PolicyBuilder& allow_without_bits(int syscall, unsigned arg, uint64_t mask) {
    rules_.push_back({syscall, {scmp_arg_cmp{arg, SCMP_CMP_MASKED_EQ, mask, 0}}});
    return *this;
  }
  PolicyBuilder& fail_with(int syscall, int error) {
    rules_.push_back({syscall, {}, static_cast<uint32_t>(SCMP_ACT_ERRNO(error))});
    return *this;
  }
  std::vector<SyscallRule> take() { return std::move(rules_); }

 private:
  std::vector<SyscallRule> rules_;
};

uint64_t signal_number(int signal) {
  return static_cast<uint64_t>(signal);
}

// What every vmm thread needs whatever it does: glibc's allocator, mutexes and condition
// variables, clocks (the vDSO may fall back to the system call), logging to stderr, eventfd
// signals, leaving the thread, and the signal handlers vmm installs.
// `opens_files`: the thread creates files (a snapshot's), so opening is allowed, not failed.
PolicyBuilder base(bool opens_files = false) {
  PolicyBuilder policy;
  policy.allow({SCMP_SYS(futex), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(restart_syscall),
                SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(getpid),
                SCMP_SYS(gettid), SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
                SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(clock_nanosleep),
                SCMP_SYS(nanosleep), SCMP_SYS(sched_yield), SCMP_SYS(write)});
  // stdio's first use of a stream (fstat, to size its buffer): a library user's console callback
  // that prints with fwrite runs on a vCPU thread.
  policy.allow({SCMP_SYS(fstat), SCMP_SYS(newfstatat)});
  // malloc: brk for the main arena, mmap/munmap/mprotect/madvise/mremap for the others and large
  // blocks; sched_getaffinity when it sizes its arena count. Never executable memory.
  policy.allow({SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mremap),
                SCMP_SYS(sched_getaffinity)});
  policy.allow_without_bits(SCMP_SYS(mmap), 2, PROT_EXEC);
  policy.allow_without_bits(SCMP_SYS(mprotect), 2, PROT_EXEC);
  // The signals a vmm thread may raise or reset: what abort() and the terminal's
  // restore-and-reraise handlers (machine/terminal.cpp) do, on whichever thread the signal lands.
  const std::initializer_list<uint64_t> signals = {signal_number(SIGABRT), signal_number(SIGINT),
                                                   signal_number(SIGTERM), signal_number(SIGHUP),
                                                   signal_number(SIGQUIT)};
  policy.allow_arg(SCMP_SYS(rt_sigaction), 0, signals);
  policy.allow_arg(SCMP_SYS(tgkill), 2, signals);
  // The terminal's restore (tcsetattr, which in Debian's glibc reads the attributes first) from
  // the signal handlers above.
  policy.allow_ioctls({TCGETS, TCSETS, TCSETSW, TCSETSF});
  // glibc may probe /proc and /sys files (malloc trimming a thread's heap, counting CPUs) and
  // copes when it can't: opening files fails instead of trapping.
  if (opens_files) {
    policy.allow({SCMP_SYS(openat), SCMP_SYS(open)});
  } else {
    policy.fail_with(SCMP_SYS(openat), EACCES);
    policy.fail_with(SCMP_SYS(open), EACCES);
  }
#if defined(VMM_SECCOMP_ASAN)
  // AddressSanitizer's runtime probes memory through a pipe and gives each thread an alternate
  // signal stack. (Its error reports need more, and end in a seccomp report.)
  policy.allow({SCMP_SYS(pipe2), SCMP_SYS(close), SCMP_SYS(sigaltstack)});
#endif
  return policy;
}

}  // namespace

const char* thread_kind_name(ThreadKind kind) {
  switch (kind) {
    case ThreadKind::kVcpu: return "vCPU";
    case ThreadKind::kEventLoop: return "event loop";
    case ThreadKind::kControlSocket: return "control socket";
    case ThreadKind::kDiskWorker: return "disk worker";
    case ThreadKind::kMain: return "main";
  }
  return "unknown";
}

std::vector<SyscallRule> seccomp_policy(ThreadKind kind) {
  PolicyBuilder policy = base(kind == ThreadKind::kControlSocket);
  const uint64_t kick = signal_number(SIGRTMIN);  // VcpuThread's kick out of KVM_RUN
  switch (kind) {
    case ThreadKind::kVcpu:
      policy.allow_ioctls({KVM_RUN,
                           KVM_GET_REGS,    // the rip of an instruction KVM failed to emulate
                           KVM_GET_SREGS,   // with the rip, the control registers at a triple fault
                           KVM_IRQ_LINE});  // the UART's and the i8042's interrupt lines
      // Nothing else: a driver's status write hands the device's activation or reset to the event
      // loop (and waits on a futex), a queue notification signals an eventfd; the devices' fds,
      // disk I/O and sockets are the loop's.
      break;
    case ThreadKind::kEventLoop:
      policy.allow({SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
                    SCMP_SYS(read), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(close),
                    SCMP_SYS(io_uring_enter),
                    // vsock: host programs connecting, guest connections to host sockets
                    SCMP_SYS(accept4), SCMP_SYS(connect), SCMP_SYS(recvfrom), SCMP_SYS(sendto),
                    SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(shutdown),
                    // vhost-user: waiting (bounded) for a backend's reply
                    SCMP_SYS(poll), SCMP_SYS(ppoll),
                    // a disk's or NIC's rate limit arms its timer
                    SCMP_SYS(timerfd_settime)});
      policy.allow_arg(SCMP_SYS(socket), 0, {AF_UNIX});
      policy.allow_ioctls({KVM_IRQ_LINE,              // console input raises the UART's interrupt
                           KVM_GET_REGS,              // where the vCPUs were when --timeout expired
                           TUNSETOFFLOAD});           // virtio-net activation and reset
      policy.allow_arg(SCMP_SYS(tgkill), 2, {kick});  // stopping the vCPUs
      break;
    case ThreadKind::kControlSocket:
      policy.allow({SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
                    SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(accept4), SCMP_SYS(recvfrom),
                    SCMP_SYS(sendto)});
      // pause and resume: the vCPUs are kicked to the pause gate, the guest clock held.
      policy.allow_ioctls({KVM_GET_CLOCK, KVM_SET_CLOCK});
      // snapshot, of the paused machine: the disks' requests in flight completed (their
      // completions polled and reaped), the KVM state read, the files written.
      policy.allow({SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(io_uring_enter), SCMP_SYS(mkdir),
                    SCMP_SYS(mkdirat), SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
                    SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(lseek),
                    SCMP_SYS(ftruncate), SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(fsync)});
      policy.allow_ioctls({KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_FPU, kvm::kGetXsave,
                           kvm::kGetXsave2, KVM_GET_XCRS, kvm::kGetMsrs, KVM_GET_LAPIC,
                           KVM_GET_MP_STATE, KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS,
                           kvm::kGetCpuid2, KVM_GET_TSC_KHZ, KVM_GET_IRQCHIP, KVM_GET_PIT2});
      policy.allow_arg(SCMP_SYS(tgkill), 2, {kick});
      break;
    case ThreadKind::kDiskWorker:
      policy.allow({SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(fdatasync), SCMP_SYS(fallocate)});
      break;
    case ThreadKind::kMain:
      // Waiting for the machine, then destroying it: threads joined, devices reset (in-flight
      // disk I/O waited for), ioeventfds and irqfds deassigned, fds closed, memory unmapped,
      // socket files (--api-socket, --vsock) removed.
      // vhost-user devices stop their backends' rings (a bounded wait for each reply), and the
      // virtiofsds vmm started are stopped and reaped. vmm run's signal thread waits for Ctrl-C.
      policy.allow({SCMP_SYS(read), SCMP_SYS(close), SCMP_SYS(epoll_ctl), SCMP_SYS(io_uring_enter),
                    SCMP_SYS(shutdown), SCMP_SYS(unlink), SCMP_SYS(sendmsg), SCMP_SYS(recvmsg),
                    SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(wait4), SCMP_SYS(waitid),
                    SCMP_SYS(rt_sigtimedwait)});
      policy.allow_arg(SCMP_SYS(kill), 1, {signal_number(SIGTERM), signal_number(SIGKILL)});
      policy.allow_ioctls({KVM_IOEVENTFD, KVM_IRQFD, TUNSETOFFLOAD});
      policy.allow_arg(SCMP_SYS(tgkill), 2, {kick});
      break;
  }
  return policy.take();
}

}  // namespace vmm::security
