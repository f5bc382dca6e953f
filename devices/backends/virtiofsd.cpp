#include "devices/backends/virtiofsd.hpp"

#include <fcntl.h>
#include <linux/mount.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices {

namespace {

// The fd number virtiofsd gets its listening socket on (--fd).
constexpr int kListenFd = 3;
// Where the fds the child only passes through are moved first, clear of 0-3.
constexpr int kHighFd = 10;

// What failed in the child before exec, sent to the parent through a close-on-exec pipe.
struct ChildFailure {
  int step;
  int error;
};
constexpr std::array<const char*, 8> kSteps = {
    "setsid",
    "unshare (a mount and network namespace: virtiofsd needs root)",
    "making its mounts private",
    "bind-mounting the directory",
    "making the directory read-only",
    "passing the socket",
    "redirecting stdin and stderr",
    "exec"};

[[noreturn]] void child_fail(int pipe_fd, int step) {
  const ChildFailure failure{step, errno};
  [[maybe_unused]] const ssize_t n = ::write(pipe_fd, &failure, sizeof(failure));
  ::_exit(127);
}

// The share's mounts in the child's own namespace: read-only there, whatever they are outside.
bool make_read_only(const char* directory) {
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (::syscall(SYS_mount_setattr, AT_FDCWD, directory, AT_RECURSIVE, &attr, sizeof(attr)) == 0) {
    return true;
  }
  // Kernels before 5.12: the top mount only.
  return errno == ENOSYS &&
         ::mount(nullptr, directory, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
}

// After fork(), in a process that may have had other threads: system calls only.
[[noreturn]] void run_child(const Virtiofsd::Options& options, char* const* argv, int listen_fd,
                            int null_fd, int log_fd, int pipe_fd) {
  const char* directory = options.directory.c_str();
  if (::setsid() < 0) child_fail(pipe_fd, 0);
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) child_fail(pipe_fd, 1);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) child_fail(pipe_fd, 2);
  if (options.read_only) {
    // "/" is a mount point already (and a bind onto it would not be what "/" resolves to).
    if (std::strcmp(directory, "/") != 0 &&
        ::mount(directory, directory, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      child_fail(pipe_fd, 3);
    }
    if (!make_read_only(directory)) child_fail(pipe_fd, 4);
  }
  if (::dup2(listen_fd, kListenFd) < 0) child_fail(pipe_fd, 5);
  if (::dup2(null_fd, STDIN_FILENO) < 0 || ::dup2(null_fd, STDOUT_FILENO) < 0 ||
      ::dup2(log_fd, STDERR_FILENO) < 0) {
    child_fail(pipe_fd, 6);
  }
  ::execv(options.program.c_str(), argv);
  child_fail(pipe_fd, 7);
}

// A listening socket at an abstract address the kernel picks, and a connection to it.
std::pair<UniqueFd, UniqueFd> socket_pair_through_listener(const std::string& name) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener) throw_errno(name + ": socket");
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // Just the family: autobind to a unique abstract address.
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(sa_family_t)) !=
          0 ||
      ::listen(listener.get(), 1) != 0) {
    throw_errno(name + ": binding the vhost-user socket");
  }
  socklen_t length = sizeof(address);
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw_errno(name + ": getsockname");
  }
  UniqueFd frontend(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!frontend ||
      ::connect(frontend.get(), reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    throw_errno(name + ": connecting to the vhost-user socket");
  }
  return {std::move(listener), std::move(frontend)};
}

UniqueFd moved_high(UniqueFd fd, const std::string& name) {
  UniqueFd high(::fcntl(fd.get(), F_DUPFD_CLOEXEC, kHighFd));
  if (!high) throw_errno(name + ": fcntl");
  return high;
}

std::string describe_status(int code, int status) {
  if (code == CLD_EXITED) return fmt::format("virtiofsd exited with status {}", status);
  return fmt::format("virtiofsd was killed by signal {}", status);
}

}  // namespace

std::optional<std::string> Virtiofsd::find_program(const std::vector<std::string>& candidates) {
  for (const std::string& candidate : candidates) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

Virtiofsd Virtiofsd::start(const Options& options) {
  const std::string& name = options.name;
  if (::access(options.program.c_str(), X_OK) != 0) throw_errno(name + ": " + options.program);
  struct stat st {};
  if (::stat(options.directory.c_str(), &st) != 0) throw_errno(name + ": " + options.directory);
  if (!S_ISDIR(st.st_mode)) fail("{}: {} is not a directory", name, options.directory);

  auto [listener, frontend] = socket_pair_through_listener(name);
  listener = moved_high(std::move(listener), name);
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd) throw_errno(name + ": /dev/null");
  null_fd = moved_high(std::move(null_fd), name);
  std::array<int, 2> log_fds{};
  if (::pipe2(log_fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) throw_errno(name + ": pipe");
  UniqueFd log_read(log_fds[0]);
  UniqueFd log_write = moved_high(UniqueFd(log_fds[1]), name);
  // Blocking for virtiofsd: a full pipe holds it up rather than losing what it says.
  if (::fcntl(log_write.get(), F_SETFL, 0) != 0) throw_errno(name + ": fcntl");
  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) throw_errno(name + ": pipe");
  UniqueFd pipe_read(pipe_fds[0]);
  UniqueFd pipe_write = moved_high(UniqueFd(pipe_fds[1]), name);

  // Everything the child needs, made before fork().
  const std::vector<std::string> args = {"virtiofsd", fmt::format("--fd={}", kListenFd),
                                         "-o",        "source=" + options.directory,
                                         "-o",        "sandbox=chroot",
                                         "-o",        "log_level=err"};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw_errno(name + ": fork");
  if (pid == 0) {
    run_child(options, argv.data(), listener.get(), null_fd.get(), log_write.get(),
              pipe_write.get());
  }
  pipe_write.reset();
  log_write.reset();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  Virtiofsd process(pid, std::move(pidfd), std::move(frontend), std::move(log_read), name);

  ChildFailure failure{};
  ssize_t n;
  do {
    n = ::read(pipe_read.get(), &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(failure)) {
    const auto step = static_cast<size_t>(failure.step);
    fail("{}: starting {}: {}", name, options.program,
         errno_message(step < kSteps.size() ? kSteps[step] : "setup", failure.error));
  }
  return process;
}

Virtiofsd::Virtiofsd(pid_t pid, UniqueFd pidfd, UniqueFd socket, UniqueFd log, std::string name)
    : pid_(pid),
      pidfd_(std::move(pidfd)),
      socket_(std::move(socket)),
      log_(std::move(log)),
      name_(std::move(name)) {}

std::vector<std::string> Virtiofsd::read_log() {
  std::vector<std::string> lines;
  std::array<char, 4096> buffer{};
  while (true) {
    const ssize_t n = ::read(log_.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (const char c : std::string_view(buffer.data(), static_cast<size_t>(n))) {
      if (c == '\n') {
        lines.push_back(std::exchange(partial_line_, {}));
      } else if (partial_line_.size() < kMaxLogLine) {
        partial_line_.push_back(c);
      }
    }
  }
  return lines;
}

Virtiofsd::Virtiofsd(Virtiofsd&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      socket_(std::move(other.socket_)),
      log_(std::move(other.log_)),
      partial_line_(std::move(other.partial_line_)),
      name_(std::move(other.name_)),
      reaped_(other.reaped_) {}

std::optional<std::string> Virtiofsd::exit_description() {
  if (pid_ <= 0) return std::nullopt;
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  reaped_ = true;
  std::string description = describe_status(info.si_code, info.si_status);
  const std::vector<std::string> said = read_log();
  if (!said.empty()) description += ": " + said.back();
  return description;
}

Virtiofsd::~Virtiofsd() {
  if (pid_ <= 0 || reaped_) return;
  socket_.reset();  // virtiofsd also ends when its connection closes
  ::kill(pid_, SIGTERM);
  if (pidfd_) {
    pollfd exited{pidfd_.get(), POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&exited, 1, static_cast<int>(kStopGrace.count()));
    } while (ready < 0 && errno == EINTR);
    if (ready == 0) ::kill(pid_, SIGKILL);
  } else {
    ::kill(pid_, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace vmm::devices
