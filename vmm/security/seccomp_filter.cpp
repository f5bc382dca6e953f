#include "vmm/security/seccomp_filter.hpp"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

#include "base/util/error.hpp"
#include "base/util/thread_annotations.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::security {

namespace {

#if !defined(__x86_64__)
#error "the SIGSYS reporter reads x86-64 registers"
#endif

// SIGSYS's si_code for a seccomp trap: SYS_SECCOMP in <asm-generic/siginfo.h>, which clashes
// with glibc's <signal.h>.
constexpr int kSigsysSeccomp = 1;

// What the SIGSYS reporter reads: no allocation, no locks. Names are filled in before any filter
// is installed and never change afterwards.
constexpr size_t kSyscallTableSize = 1024;
constexpr size_t kNameBytes = 32;
std::array<std::array<char, kNameBytes>, kSyscallTableSize> g_syscall_names{};
struct sigaction g_previous_sigsys {};
// The confined thread's kind, for the report; null on threads vmm did not confine.
thread_local const char* t_thread_kind = nullptr;

constexpr size_t kThreadKindCount = std::size(kAllThreadKinds);
Mutex g_programs_mutex;
std::array<std::optional<std::vector<sock_filter>>, kThreadKindCount> g_programs
    VMM_GUARDED_BY(g_programs_mutex);

void fill_syscall_names() {
  for (size_t nr = 0; nr < kSyscallTableSize; ++nr) {
    std::unique_ptr<char, decltype(&std::free)> name(
        seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, static_cast<int>(nr)), &std::free);
    if (name) std::strncpy(g_syscall_names[nr].data(), name.get(), kNameBytes - 1);
  }
}

// Appends for the async-signal-safe report.
struct Line {
  std::array<char, 192> text{};
  size_t size = 0;

  void add(const char* s) {
    while (*s != '\0' && size < text.size()) text[size++] = *s++;
  }
  void add_number(long value) {
    std::array<char, 24> digits{};
    size_t n = 0;
    unsigned long v = value < 0 ? 0ul - static_cast<unsigned long>(value) : value;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    if (value < 0) add("-");
    while (n > 0 && size < text.size()) text[size++] = digits[--n];
  }
};

void pass_on(int signal, siginfo_t* info, void* context) {
  if ((g_previous_sigsys.sa_flags & SA_SIGINFO) != 0) {
    g_previous_sigsys.sa_sigaction(signal, info, context);
  } else if (g_previous_sigsys.sa_handler == SIG_DFL) {
    // Delivered when this handler returns (the signal is blocked while it runs).
    ::signal(SIGSYS, SIG_DFL);
    ::raise(SIGSYS);
  } else if (g_previous_sigsys.sa_handler != SIG_IGN) {
    g_previous_sigsys.sa_handler(signal);
  }
}

void report_violation(int signal, siginfo_t* info, void* context) {
  const char* kind = t_thread_kind;
  if (info->si_code != kSigsysSeccomp || kind == nullptr) {
    pass_on(signal, info, context);
    return;
  }
  const int nr = info->si_syscall;
  const char* name = nr >= 0 && static_cast<size_t>(nr) < kSyscallTableSize &&
                             g_syscall_names[static_cast<size_t>(nr)][0] != '\0'
                         ? g_syscall_names[static_cast<size_t>(nr)].data()
                         : "unknown";
  Line line;
  line.add("vmm: seccomp: ");
  line.add(kind);
  line.add(" thread made a forbidden system call: ");
  line.add(name);
  line.add(" (");
  line.add_number(nr);
  line.add(")\n");
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, line.text.data(), line.size);
  // The same call with the same arguments traps again, now with SIGSYS blocked (we are in its
  // handler): the kernel then resets SIGSYS to its default action and the process dies of it.
  const greg_t* regs = static_cast<ucontext_t*>(context)->uc_mcontext.gregs;
  ::syscall(nr, regs[REG_RDI], regs[REG_RSI], regs[REG_RDX], regs[REG_R10], regs[REG_R8],
            regs[REG_R9]);
  ::_exit(128 + SIGSYS);  // only if that call was, against expectation, allowed
}

void install_reporter() {
  fill_syscall_names();
  struct sigaction action {};
  action.sa_sigaction = report_violation;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  if (::sigaction(SIGSYS, &action, &g_previous_sigsys) != 0) throw_errno("seccomp: SIGSYS handler");
}

std::vector<sock_filter> read_program(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno("seccomp: reading the filter");
  const auto bytes = static_cast<size_t>(st.st_size);
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0) {
    fail("seccomp: libseccomp exported a filter of {} bytes", bytes);
  }
  std::vector<sock_filter> program(bytes / sizeof(sock_filter));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd, reinterpret_cast<char*>(program.data()) + done, bytes - done,
                              static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno("seccomp: reading the filter");
    done += static_cast<size_t>(n);
  }
  return program;
}

const std::vector<sock_filter>& program_for(ThreadKind kind) {
  MutexLock lock(g_programs_mutex);
  auto& program = g_programs[static_cast<size_t>(kind)];
  if (!program) program = compile_seccomp_filter(kind);
  return *program;
}

void prepare_reporter() {
  static std::once_flag once;
  std::call_once(once, install_reporter);
}

}  // namespace

std::vector<sock_filter> compile_seccomp_filter(ThreadKind kind) {
  const char* kind_name = thread_kind_name(kind);
  std::unique_ptr<void, decltype(&seccomp_release)> filter(seccomp_init(SCMP_ACT_TRAP),
                                                           &seccomp_release);
  if (!filter) fail("seccomp: {} policy: libseccomp could not start a filter", kind_name);
  int rc = seccomp_attr_set(filter.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc < 0) throw Error(errno_message(fmt::format("seccomp: {} policy", kind_name), -rc));
  for (const SyscallRule& rule : seccomp_policy(kind)) {
    rc = seccomp_rule_add_array(filter.get(), rule.action, rule.syscall,
                                static_cast<unsigned>(rule.args.size()), rule.args.data());
    if (rc < 0) {
      std::unique_ptr<char, decltype(&std::free)> name(
          seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, rule.syscall), &std::free);
      throw Error(errno_message(fmt::format("seccomp: {} policy: the rule for {}", kind_name,
                                            name ? name.get() : std::to_string(rule.syscall)),
                                -rc));
    }
  }
  UniqueFd memory(::memfd_create("vmm-seccomp", MFD_CLOEXEC));
  if (!memory) throw_errno("seccomp: memfd_create");
  rc = seccomp_export_bpf(filter.get(), memory.get());
  if (rc < 0) throw Error(errno_message(fmt::format("seccomp: {} policy", kind_name), -rc));
  std::vector<sock_filter> program = read_program(memory.get());
  if (program.size() > BPF_MAXINSNS) {
    fail("seccomp: {} policy: {} BPF instructions, the kernel takes at most {}", kind_name,
         program.size(), BPF_MAXINSNS);
  }
  return program;
}

void prepare_seccomp_filters() {
  prepare_reporter();
  for (ThreadKind kind : kAllThreadKinds) program_for(kind);
}

void confine_thread(ThreadKind kind) {
  prepare_reporter();
  const std::vector<sock_filter>& program = program_for(kind);
  // Give the thread its malloc arena and its thread_local now: both may need system calls the
  // filter forbids when done for the first time.
  void* volatile block = std::malloc(64);
  std::free(block);
  t_thread_kind = thread_kind_name(kind);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("seccomp: PR_SET_NO_NEW_PRIVS");
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size());
  prog.filter = const_cast<sock_filter*>(program.data());
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    t_thread_kind = nullptr;
    throw_errno(fmt::format("seccomp: installing the {} thread's filter", thread_kind_name(kind)));
  }
}

}  // namespace vmm::security
