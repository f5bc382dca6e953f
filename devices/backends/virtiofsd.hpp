#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"

namespace vmm::devices {

// A virtiofsd that vmm starts for one shared directory and stops when it is destroyed: the
// backend of a virtio-fs device (vhost-user). Debian's virtiofsd (QEMU's, in Debian 12) needs
// root: it sandboxes itself (capabilities, seccomp).
//
// vmm adds a sandbox of its own around it: a mount namespace and a network namespace of its own
// (it serves files, it has no business on the network), where a read-only share is a read-only
// mount (the guest's writes fail with EROFS in the host's kernel, whatever the guest or a bug in
// virtiofsd does), and virtiofsd chroots into the directory (-o sandbox=chroot: its pivot_root
// mode can't work where the host's root is an initramfs, as in the nested lab).
//
// The vhost-user socket is not a file: vmm listens on an abstract socket, connects to it, and
// hands virtiofsd the listening end (--fd), so no socket path is left behind and no other process
// can connect first. virtiofsd runs in a session of its own: the terminal's Ctrl-C is vmm's to
// handle, not virtiofsd's. Its stderr is a pipe vmm reads (log_fd()): what it says is vmm's to
// report, named by the share, and what it says as vmm hangs up on it at exit is dropped.
class Virtiofsd {
 public:
  struct Options {
    std::string program;    // the virtiofsd binary
    std::string directory;  // the shared directory
    bool read_only = false;
    std::string name;  // for messages: "--share /srv:docs"
  };

  // Checks the program and the directory, then starts virtiofsd. Throws vmm::Error naming
  // `options.name` ("--share /x:tag: /x: No such file or directory").
  static Virtiofsd start(const Options& options);
  Virtiofsd(Virtiofsd&& other) noexcept;
  Virtiofsd& operator=(Virtiofsd&& other) = delete;
  Virtiofsd(const Virtiofsd&) = delete;
  Virtiofsd& operator=(const Virtiofsd&) = delete;
  // Stops it: SIGTERM, then SIGKILL if it has not exited within kStopGrace; reaps it.
  ~Virtiofsd();

  static constexpr std::chrono::milliseconds kStopGrace{2000};

  // The frontend's end of the vhost-user connection (once; afterwards invalid).
  UniqueFd take_socket() { return std::move(socket_); }
  pid_t pid() const { return pid_; }
  // Options::name: the share it serves ("--share /srv:docs").
  const std::string& name() const { return name_; }
  // Whether it has exited, and how ("virtiofsd exited with status 1"), without waiting; nullopt
  // while it runs. For the message when the vhost-user handshake fails.
  std::optional<std::string> exit_description();

  // The read end of its stderr (non-blocking), to watch on an event loop.
  int log_fd() const { return log_.get(); }
  // Its complete lines on stderr so far, without waiting (at most kMaxLogLine bytes each).
  std::vector<std::string> read_log();
  static constexpr size_t kMaxLogLine = 512;

  // The first virtiofsd of `candidates` that exists, for a share without --virtiofsd.
  static std::optional<std::string> find_program(const std::vector<std::string>& candidates);

 private:
  Virtiofsd(pid_t pid, UniqueFd pidfd, UniqueFd socket, UniqueFd log, std::string name);

  pid_t pid_ = -1;
  UniqueFd pidfd_;  // to signal and wait for exactly this process
  UniqueFd socket_;
  UniqueFd log_;
  std::string partial_line_;  // read_log()'s
  std::string name_;
  bool reaped_ = false;
};

}  // namespace vmm::devices
