#include "vmm/machine/terminal.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/util/error.hpp"

namespace vmm {

namespace {

// Process-wide because signal handlers and atexit need it; only one RawTerminal exists at a time.
struct termios g_saved;
std::atomic<int> g_fd{-1};

void restore_terminal() {
  const int fd = g_fd.exchange(-1);
  if (fd >= 0) ::tcsetattr(fd, TCSANOW, &g_saved);
}

void restore_and_reraise(int sig) {
  restore_terminal();  // tcsetattr is async-signal-safe
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

std::unique_ptr<RawTerminal> RawTerminal::enter(int fd) {
  if (!::isatty(fd)) return nullptr;
  struct termios saved {};
  if (::tcgetattr(fd, &saved) != 0) throw_errno("tcgetattr on the console");
  int expected = -1;
  if (!g_fd.compare_exchange_strong(expected, -2)) return nullptr;  // another one is active
  g_saved = saved;
  static bool hooks_installed = false;
  if (!hooks_installed) {
    hooks_installed = true;
    std::atexit(restore_terminal);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
      struct sigaction action {};
      action.sa_handler = restore_and_reraise;
      sigemptyset(&action.sa_mask);
      ::sigaction(sig, &action, nullptr);
    }
  }
  struct termios raw = saved;
  // Raw input for the guest, but keep ISIG (Ctrl-C ends vmm) and output post-processing off so
  // the guest's own "\r\n" reach the terminal unchanged.
  raw.c_iflag &=
      ~static_cast<tcflag_t>(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON);
  raw.c_lflag &= ~static_cast<tcflag_t>(ECHO | ECHONL | ICANON | IEXTEN);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  g_fd.store(fd);
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) {
    g_fd.store(-1);
    throw_errno("tcsetattr on the console");
  }
  return std::unique_ptr<RawTerminal>(new RawTerminal());
}

RawTerminal::~RawTerminal() {
  restore_terminal();
}

namespace {

// A non-blocking file description of our own for the pipe or terminal behind `fd` (invalid where
// /proc is missing or the object can't be reopened, e.g. a pipe with no reader).
UniqueFd reopen_non_blocking(int fd, const struct stat& st) {
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd reopened(::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
  if (!reopened) return reopened;
  struct stat again {};
  if (::fstat(reopened.get(), &again) != 0 || again.st_dev != st.st_dev ||
      again.st_ino != st.st_ino) {
    return UniqueFd();
  }
  return reopened;
}

void set_non_blocking(int fd, const std::string& name) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_errno(name);
}

}  // namespace

UniqueFd non_blocking_writer(int fd, const std::string& name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(name);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode) && !S_ISSOCK(st.st_mode)) {
    if (UniqueFd own = reopen_non_blocking(fd, st)) return own;
    // Shared with whoever else holds this file description (the shell, stderr): it stays
    // non-blocking, since the machine's threads may not call fcntl to restore it.
    spdlog::debug("{}: could not reopen it ({}); making it non-blocking", name,
                  std::strerror(errno));
    set_non_blocking(fd, name);
  }
  // A regular file is never "full" (O_NONBLOCK means nothing to it); a socket is sent to with
  // MSG_DONTWAIT.
  UniqueFd duplicate(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!duplicate) throw_errno(name);
  return duplicate;
}

std::unique_ptr<ConsoleOutput> ConsoleOutput::to_fd(EventLoop& loop, devices::Serial16550& uart,
                                                    int fd, std::string name) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(name);
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
    return std::unique_ptr<ConsoleOutput>(
        new ConsoleOutput(loop, uart, Kind::kWrite, fd, std::move(name)));
  }
  if (S_ISSOCK(st.st_mode)) {
    return std::unique_ptr<ConsoleOutput>(
        new ConsoleOutput(loop, uart, Kind::kSend, fd, std::move(name)));
  }
  UniqueFd own = non_blocking_writer(fd, name);
  return to_owned_fd(loop, uart, std::move(own), std::move(name));
}

std::unique_ptr<ConsoleOutput> ConsoleOutput::to_owned_fd(EventLoop& loop,
                                                          devices::Serial16550& uart, UniqueFd fd,
                                                          std::string name) {
  set_non_blocking(fd.get(), name);
  std::unique_ptr<ConsoleOutput> output(
      new ConsoleOutput(loop, uart, Kind::kWrite, fd.get(), std::move(name)));
  output->owned_fd_ = std::move(fd);
  return output;
}

std::unique_ptr<ConsoleOutput> ConsoleOutput::to_callback(EventLoop& loop,
                                                          devices::Serial16550& uart,
                                                          Callback callback) {
  std::unique_ptr<ConsoleOutput> output(
      new ConsoleOutput(loop, uart, Kind::kCallback, -1, "console callback"));
  output->callback_ = std::move(callback);
  return output;
}

ConsoleOutput::ConsoleOutput(EventLoop& loop, devices::Serial16550& uart, Kind kind, int fd,
                             std::string name)
    : loop_(loop), uart_(uart), kind_(kind), fd_(fd), name_(std::move(name)) {
  uart_.set_output_notifier([this] { wake_.signal(); });
}

// The loop's registrations are left to the loop: it never runs again once the machine's loop
// thread has ended, and this is destroyed after that. The UART is destroyed after this too, and no
// vCPU runs any more to call the notifier.
ConsoleOutput::~ConsoleOutput() = default;

void ConsoleOutput::watch() {
  loop_.add(wake_.fd(), EPOLLIN, [this](uint32_t) {
    wake_.consume();
    drain();
  });
  watched_ = true;
  // Output that arrived before the loop watched (none, unless the guest ran already).
  wake_.signal();
}

void ConsoleOutput::drain() {
  size_t budget = kBytesPerWakeup;
  while (true) {
    if (pending_.empty()) {
      if (budget == 0) {
        // Bounded work per wake-up: come back in the next round, after the other fds.
        wake_.signal();
        return;
      }
      const size_t n = uart_.take_output(std::span(chunk_).first(std::min(budget, chunk_.size())));
      if (n == 0) break;  // the UART asks again when more arrives
      budget -= n;
      pending_ = std::span<const uint8_t>(chunk_).first(n);
    }
    if (write_pending() == Outcome::kWouldBlock) {
      wait_writable(true);
      return;
    }
  }
  wait_writable(false);
}

ConsoleOutput::Outcome ConsoleOutput::write_pending() {
  while (!pending_.empty()) {
    if (failed_) {
      pending_ = {};
      break;
    }
    if (kind_ == Kind::kCallback) {
      if (callback_) callback_(pending_);
      pending_ = {};
      break;
    }
    const ssize_t n = kind_ == Kind::kSend ? ::send(fd_, pending_.data(), pending_.size(),
                                                    MSG_DONTWAIT | MSG_NOSIGNAL)
                                           : ::write(fd_, pending_.data(), pending_.size());
    if (n > 0) {
      pending_ = pending_.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Outcome::kWouldBlock;
    // The console is gone (the reader closed the pipe, the disk is full): unplugged, in effect.
    spdlog::warn("{}: {}; the guest's console output is discarded from now on", name_,
                 n < 0 ? std::strerror(errno) : "wrote nothing");
    failed_ = true;
    pending_ = {};
    return Outcome::kFailed;
  }
  return Outcome::kDone;
}

void ConsoleOutput::wait_writable(bool on) {
  if (on == waiting_writable_ || !watched_) return;
  if (on) {
    if (!registered_fd_) {
      loop_.add(fd_, EPOLLOUT, [this](uint32_t) { drain(); });
      registered_fd_ = true;
    } else {
      loop_.modify(fd_, EPOLLOUT);
    }
  } else {
    loop_.modify(fd_, 0);
  }
  waiting_writable_ = on;
}

size_t ConsoleOutput::flush(std::chrono::milliseconds stall) {
  using Clock = std::chrono::steady_clock;
  auto progress = Clock::now();
  while (true) {
    if (pending_.empty()) {
      const size_t n = uart_.take_output(chunk_);
      if (n == 0) return 0;
      pending_ = std::span<const uint8_t>(chunk_).first(n);
    }
    const size_t before = pending_.size();
    const Outcome outcome = write_pending();
    if (outcome == Outcome::kDone) {
      progress = Clock::now();
      continue;
    }
    if (outcome == Outcome::kFailed) continue;  // discards the rest
    if (pending_.size() < before) progress = Clock::now();
    if (Clock::now() - progress >= stall) {
      const size_t left = pending_.size() + uart_.output_pending();
      spdlog::warn("{}: {} bytes of console output not written: the reader stopped reading", name_,
                   left);
      return left;
    }
    const timespec pause{0, 1000 * 1000};  // 1 ms
    ::nanosleep(&pause, nullptr);
  }
}

}  // namespace vmm
