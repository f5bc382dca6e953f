// Each check runs in a child process (a death test): a thread confines itself and makes a system
// call; a forbidden one must kill the child with SIGSYS after the one-line report on stderr.
#include "vmm/security/seccomp_filter.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#include "devices/virtio/device_metrics.hpp"
#include "devices/virtio/throttle.hpp"

namespace vmm::security {
namespace {

using ::testing::ExitedWithCode;
using ::testing::KilledBySignal;

// Runs `body` on a new thread confined to `kind`, then ends the child: status 0 if the thread came
// back (a filter that kills never lets it).
void no_core_dumps() {
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // the expected SIGSYS deaths need no core files
}

[[noreturn]] void run_confined(ThreadKind kind, const std::function<void()>& body) {
  no_core_dumps();
  std::thread thread([&] {
    confine_thread(kind);
    body();
  });
  thread.join();
  std::fflush(nullptr);
  ::_exit(0);
}

// For the allowed-call checks: a failed expectation ends the child with status 1 and a line.
void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "check failed: %s (errno %d)\n", what, errno);
  ::_exit(1);
}

TEST(SeccompFilterDeathTest, ADiskWorkerOpeningANetworkSocketIsKilledAndNamed) {
  EXPECT_EXIT(run_confined(ThreadKind::kDiskWorker, [] { ::socket(AF_INET, SOCK_STREAM, 0); }),
              KilledBySignal(SIGSYS),
              "^vmm: seccomp: disk worker thread made a forbidden system call: socket \\(41\\)\n$");
}

TEST(SeccompFilterDeathTest, TheEventLoopStartingAProgramIsKilled) {
  EXPECT_EXIT(run_confined(ThreadKind::kEventLoop,
                           [] {
                             char* const argv[] = {nullptr};
                             ::execve("/bin/true", argv, argv);
                           }),
              KilledBySignal(SIGSYS),
              "event loop thread made a forbidden system call: execve \\(59\\)");
}

TEST(SeccompFilterDeathTest, TheEventLoopMayOpenUnixSocketsButNotInternetOnes) {
  EXPECT_EXIT(run_confined(ThreadKind::kEventLoop,
                           [] {
                             const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                             check(fd >= 0, "socket(AF_UNIX)");
                             ::close(fd);
                             ::socket(AF_INET6, SOCK_DGRAM, 0);
                           }),
              KilledBySignal(SIGSYS),
              "event loop thread made a forbidden system call: socket \\(41\\)");
}

TEST(SeccompFilterDeathTest, AVcpuMayIssueItsKvmIoctlsButNoOthers) {
  EXPECT_EXIT(
      {
        const int fd = ::eventfd(0, EFD_CLOEXEC);
        run_confined(ThreadKind::kVcpu, [fd] {
          // Past the filter, the kernel answers: not a vCPU fd.
          check(::ioctl(fd, KVM_RUN, 0) < 0 && errno == ENOTTY, "KVM_RUN");
          ::ioctl(fd, KVM_CREATE_VM, 0);
        });
      },
      KilledBySignal(SIGSYS), "vCPU thread made a forbidden system call: ioctl \\(16\\)");
}

TEST(SeccompFilterDeathTest, NoThreadMayMapExecutableMemory) {
  EXPECT_EXIT(run_confined(ThreadKind::kMain,
                           [] {
                             void* data = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE,
                                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                             check(data != MAP_FAILED, "mmap(PROT_READ | PROT_WRITE)");
                             // Never returns: the filter kills the process.
                             void* code = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC,
                                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                             check(code == MAP_FAILED, "mmap(PROT_EXEC) was refused");
                           }),
              KilledBySignal(SIGSYS), "main thread made a forbidden system call: mmap \\(9\\)");
}

TEST(SeccompFilterDeathTest, TheControlSocketMayNotTouchFiles) {
  EXPECT_EXIT(run_confined(ThreadKind::kControlSocket, [] { ::unlink("/nonexistent/x"); }),
              KilledBySignal(SIGSYS),
              "control socket thread made a forbidden system call: unlink \\(87\\)");
}

TEST(SeccompFilterDeathTest, ADiskWorkerDoesItsIoUnderTheFilter) {
  EXPECT_EXIT(
      {
        const int file = ::memfd_create("disk", MFD_CLOEXEC);
        const int completions = ::eventfd(0, EFD_CLOEXEC);
        run_confined(ThreadKind::kDiskWorker, [file, completions] {
          std::array<char, 512> out{};
          out.fill('x');
          iovec write_vec{out.data(), out.size()};
          check(::pwritev(file, &write_vec, 1, 4096) == 512, "pwritev");
          std::array<char, 512> in{};
          iovec read_vec{in.data(), in.size()};
          check(::preadv(file, &read_vec, 1, 4096) == 512 && in == out, "preadv");
          check(::fdatasync(file) == 0, "fdatasync");
          check(::fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0,
                "fallocate");
          const uint64_t one = 1;
          check(::write(completions, &one, sizeof(one)) == sizeof(one), "eventfd write");
          // The allocator's system calls (a large block is an mmap of its own).
          std::vector<char> large(8 << 20, 'y');
          check(large.back() == 'y', "malloc");
          // glibc's probes of /proc files fail instead of trapping.
          check(::open("/proc/self/status", O_RDONLY) < 0 && errno == EACCES, "open fails");
        });
      },
      ExitedWithCode(0), "");
}

// The machine's teardown resets the devices on the main thread: a rate limit that waits (its
// timer armed) is cancelled there, under the main thread's filter.
TEST(SeccompFilterDeathTest, TheMainThreadMayResetADeviceWhoseRateLimitWaits) {
  EXPECT_EXIT(
      {
        devices::virtio::DeviceMetrics metrics;
        devices::virtio::Throttle throttle({.ops_per_second = 1, .ops_burst = 1}, metrics);
        check(throttle.allows(0), "the first operation goes");
        throttle.take(0);
        check(!throttle.allows(0) && throttle.waiting(), "the second waits");
        run_confined(ThreadKind::kMain, [&throttle] {
          throttle.cancel();
          check(!throttle.waiting(), "nothing waits after the reset");
        });
      },
      ExitedWithCode(0), "");
}

TEST(SeccompFilterDeathTest, OnlyTheConfinedThreadIsFiltered) {
  EXPECT_EXIT(
      {
        std::thread confined([] { confine_thread(ThreadKind::kDiskWorker); });
        confined.join();
        const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);  // this thread is not confined
        ::_exit(fd >= 0 ? 0 : 1);
      },
      ExitedWithCode(0), "");
}

// The reporter is process-wide; a SIGSYS that is not a vmm thread's violation keeps the action it
// had before (here the default: the process dies, and nothing is reported).
TEST(SeccompFilterDeathTest, OtherSigsysKeepTheirFormerAction) {
  EXPECT_EXIT(
      {
        no_core_dumps();
        prepare_seccomp_filters();
        ::raise(SIGSYS);
        ::_exit(0);
      },
      KilledBySignal(SIGSYS), "^$");
}

}  // namespace
}  // namespace vmm::security
