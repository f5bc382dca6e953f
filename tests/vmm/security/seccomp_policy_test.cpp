#include "vmm/security/seccomp_policy.hpp"

#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <set>
#include <string>

#include "vmm/security/seccomp_filter.hpp"

namespace vmm::security {
namespace {

bool has_rule(const std::vector<SyscallRule>& rules, int syscall) {
  for (const SyscallRule& rule : rules) {
    if (rule.syscall == syscall) return true;
  }
  return false;
}

TEST(SeccompPolicy, EveryThreadKindsPolicyCompilesToABpfProgramTheKernelTakes) {
  for (ThreadKind kind : kAllThreadKinds) {
    const std::vector<sock_filter> program = compile_seccomp_filter(kind);
    EXPECT_GT(program.size(), 10u) << thread_kind_name(kind);
    EXPECT_LE(program.size(), static_cast<size_t>(BPF_MAXINSNS)) << thread_kind_name(kind);
  }
  EXPECT_NO_THROW(prepare_seccomp_filters());
}

TEST(SeccompPolicy, ThreadKindsHaveDistinctNames) {
  std::set<std::string> names;
  for (ThreadKind kind : kAllThreadKinds) names.insert(thread_kind_name(kind));
  EXPECT_EQ(names.size(), std::size(kAllThreadKinds));
  EXPECT_STREQ(thread_kind_name(ThreadKind::kDiskWorker), "disk worker");
}

TEST(SeccompPolicy, NoThreadMayStartProgramsThreadsOrDebugOthers) {
  for (ThreadKind kind : kAllThreadKinds) {
    const auto rules = seccomp_policy(kind);
    for (int forbidden : {SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(fork), SCMP_SYS(vfork),
                          SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(ptrace),
                          SCMP_SYS(process_vm_writev), SCMP_SYS(bind), SCMP_SYS(listen)}) {
      EXPECT_FALSE(has_rule(rules, forbidden))
          << thread_kind_name(kind) << " allows system call " << forbidden;
    }
  }
}

TEST(SeccompPolicy, OnlyTheEventLoopOpensSocketsAndOnlyUnixOnes) {
  for (ThreadKind kind : kAllThreadKinds) {
    for (const SyscallRule& rule : seccomp_policy(kind)) {
      if (rule.syscall != SCMP_SYS(socket)) continue;
      EXPECT_EQ(kind, ThreadKind::kEventLoop);
      ASSERT_EQ(rule.args.size(), 1u);
      EXPECT_EQ(rule.args[0].arg, 0u);
      EXPECT_EQ(rule.args[0].op, SCMP_CMP_EQ);
      EXPECT_EQ(rule.args[0].datum_a, static_cast<uint64_t>(AF_UNIX));
    }
  }
}

TEST(SeccompPolicy, IoctlIsAllowedOnlyForListedRequests) {
  for (ThreadKind kind : kAllThreadKinds) {
    for (const SyscallRule& rule : seccomp_policy(kind)) {
      if (rule.syscall != SCMP_SYS(ioctl)) continue;
      ASSERT_EQ(rule.args.size(), 1u) << thread_kind_name(kind);
      EXPECT_EQ(rule.args[0].arg, 1u);
      EXPECT_EQ(rule.args[0].op, SCMP_CMP_EQ);
    }
  }
}

// The devices belong to the event loop: a vCPU only runs the guest and touches registers, so it
// may not reach a device's fds, its disk I/O or its sockets.
TEST(SeccompPolicy, AVcpuTouchesNoDeviceFdsDiskIoOrSockets) {
  const auto rules = seccomp_policy(ThreadKind::kVcpu);
  // (close is not in the list: an ASan build's runtime needs it on every thread.)
  for (int forbidden : {SCMP_SYS(epoll_ctl), SCMP_SYS(io_uring_enter), SCMP_SYS(shutdown),
                        SCMP_SYS(read), SCMP_SYS(socket), SCMP_SYS(preadv), SCMP_SYS(accept4)}) {
    EXPECT_FALSE(has_rule(rules, forbidden)) << forbidden;
  }
  for (const SyscallRule& rule : rules) {
    if (rule.syscall != SCMP_SYS(ioctl)) continue;
    EXPECT_NE(rule.args.at(0).datum_a, uint64_t{TUNSETOFFLOAD});
  }
}

TEST(SeccompPolicy, DiskWorkersDoFileIoAndNothingOfTheDevices) {
  const auto rules = seccomp_policy(ThreadKind::kDiskWorker);
  for (int needed : {SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(fdatasync), SCMP_SYS(fallocate),
                     SCMP_SYS(futex), SCMP_SYS(write)}) {
    EXPECT_TRUE(has_rule(rules, needed)) << needed;
  }
  for (int forbidden : {SCMP_SYS(socket), SCMP_SYS(connect), SCMP_SYS(epoll_ctl), SCMP_SYS(unlink),
                        SCMP_SYS(io_uring_enter)}) {
    EXPECT_FALSE(has_rule(rules, forbidden)) << forbidden;
  }
  // Its only ioctls restore the terminal (from the SIGINT/SIGTERM handlers any thread may run).
  for (const SyscallRule& rule : rules) {
    if (rule.syscall != SCMP_SYS(ioctl)) continue;
    const uint64_t request = rule.args.at(0).datum_a;
    EXPECT_TRUE(request == TCGETS || request == TCSETS || request == TCSETSW || request == TCSETSF)
        << request;
  }
}

}  // namespace
}  // namespace vmm::security
