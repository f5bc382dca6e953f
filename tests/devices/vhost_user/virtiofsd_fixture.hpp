#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/devices/temp_dir.hpp"

namespace vmm::devices::testing {

// Debian's C virtiofsd (qemu-system-common) serving a fresh temporary folder on a socket of its
// own; killed with everything it started when destroyed. Tests that need it skip themselves with
// `if (auto why = Virtiofsd::unavailable()) GTEST_SKIP() << *why;`.
class Virtiofsd {
 public:
  static constexpr const char* kProgram = "/usr/lib/qemu/virtiofsd";

  // Why this host can't run it, or nothing.
  static std::optional<std::string> unavailable() {
    if (::access(kProgram, X_OK) != 0) return std::string(kProgram) + " is not installed";
    if (::geteuid() != 0) return std::string("virtiofsd needs root (its sandbox's namespaces)");
    return std::nullopt;
  }

  // Starts it and waits until it accepts connections (throws std::runtime_error after 10 s, with
  // its log).
  Virtiofsd() {
    std::filesystem::create_directory(shared_dir());
    // Everything the child needs is made before fork(): after it, only async-signal-safe calls.
    const std::string socket_arg = "--socket-path=" + socket_path();
    const std::string source_arg = "source=" + shared_dir();
    const std::array<const char*, 8> argv = {kProgram, socket_arg.c_str(), "-o", source_arg.c_str(),
                                             "-o",     "cache=auto",       "-f", nullptr};
    const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::runtime_error("cannot create " + log_path());
    pid_ = ::fork();
    if (pid_ == 0) {
      // Its own process group: virtiofsd forks into a new PID namespace, and kill() of the group
      // reaches both processes.
      ::setpgid(0, 0);
      if (::dup2(log_fd, STDERR_FILENO) < 0) ::_exit(126);
      ::execv(kProgram, const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
    ::close(log_fd);
    if (pid_ < 0) throw std::runtime_error("fork failed");
    // It logs this line after listen(), right before accept(); a probe connection would take the
    // one connection it serves.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (log().find("Waiting for vhost-user socket connection") == std::string::npos) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("virtiofsd exited at start: " + log());
      }
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("virtiofsd did not start within 10 s: " + log());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  ~Virtiofsd() { kill(); }
  Virtiofsd(const Virtiofsd&) = delete;
  Virtiofsd& operator=(const Virtiofsd&) = delete;

  std::string socket_path() const { return dir_.file("virtiofsd.sock"); }
  std::string shared_dir() const { return dir_.file("shared"); }
  std::string log_path() const { return dir_.file("virtiofsd.log"); }
  std::string log() const {
    std::ifstream in(log_path());
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // SIGKILL to it and its sandboxed child, and reaped.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
};

}  // namespace vmm::devices::testing
