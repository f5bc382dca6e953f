#include "vmm/machine/terminal.hpp"

#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

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

}  // namespace vmm
