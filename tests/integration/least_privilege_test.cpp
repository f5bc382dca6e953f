// What a running machine holds on the host, checked from inside the process that embeds it: no
// executable anonymous memory (guest RAM is never executable on the host), every fd it opened is
// close-on-exec (a program the embedder spawns inherits none of them), and it writes no file but
// the ones it was told to (the disk image, the console file, its sockets, which it removes).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/guest_run.hpp"
#include "vmm/machine.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;

std::set<int> open_fd_numbers() {
  std::set<int> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    fds.insert(std::stoi(entry.path().filename().string()));
  }
  return fds;
}

// /proc/self/maps lines that are executable and not backed by a file (nor the kernel's vdso).
std::vector<std::string> anonymous_executable_mappings() {
  std::vector<std::string> found;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, inode, path;
    fields >> range >> perms >> offset >> device >> inode;
    std::getline(fields >> std::ws, path);
    const bool executable = perms.size() > 2 && perms[2] == 'x';
    const bool file_backed = !path.empty() && path[0] == '/';
    if (executable && !file_backed && path != "[vdso]" && path != "[vsyscall]") {
      found.push_back(line);
    }
  }
  return found;
}

class LeastPrivilege : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
    char pattern[] = "/tmp/vmm-privilege-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::ofstream(dir_ / "disk.img", std::ios::binary) << std::string(1 << 20, '\0');
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // A machine with one of each kind of host resource: disk, vsock, control socket, console file.
  MachineConfig config() const {
    MachineConfig config;
    config.kernel_path = test_guest_image("hello");
    config.cmdline = "console=ttyS0 spin";
    config.memory_bytes = 64 << 20;
    config.serial.mode = SerialConfig::Mode::kFile;
    config.serial.path = (dir_ / "console.log").string();
    config.disks.push_back({(dir_ / "disk.img").string(), false, "disk0", {}});
    config.vsock = VsockConfig{3, (dir_ / "vsock.sock").string()};
    config.api_socket = (dir_ / "api.sock").string();
    return config;
  }

  std::set<std::string> files_in_dir() const {
    std::set<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.insert(entry.path().filename().string());
    }
    return names;
  }

  std::filesystem::path dir_;
};

TEST_F(LeastPrivilege, GuestMemoryAndEverythingElseIsNeverExecutable) {
  auto machine = Machine::create(config());
  machine->start();
  EXPECT_EQ(anonymous_executable_mappings(), std::vector<std::string>{});
  machine->stop();
  ASSERT_TRUE(machine->wait(liveness_bound(60s)));
}

TEST_F(LeastPrivilege, EveryFdTheMachineOpensIsCloseOnExec) {
  const std::set<int> before = open_fd_numbers();
  auto machine = Machine::create(config());
  machine->start();
  size_t checked = 0;
  for (const int fd : open_fd_numbers()) {
    if (before.count(fd) != 0) continue;
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) continue;  // the directory iterator's own fd, already closed
    ++checked;
    std::error_code error;
    const auto target = std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), error);
    EXPECT_NE(flags & FD_CLOEXEC, 0) << "fd " << fd << " (" << target << ") is inherited by exec";
  }
  // KVM (system, VM, vCPU), guest RAM is not an fd, but eventfds, epoll, io_uring, the image, the
  // sockets and the console file are: a machine like this holds well over ten.
  EXPECT_GT(checked, 10u);
  machine->stop();
  ASSERT_TRUE(machine->wait(liveness_bound(60s)));
}

TEST_F(LeastPrivilege, WritesOnlyWhatItWasToldToAndRemovesItsSockets) {
  {
    auto machine = Machine::create(config());
    machine->start();
    EXPECT_EQ(files_in_dir(),
              (std::set<std::string>{"api.sock", "console.log", "disk.img", "vsock.sock"}));
    machine->stop();
    ASSERT_TRUE(machine->wait(liveness_bound(60s)));
  }
  EXPECT_EQ(files_in_dir(), (std::set<std::string>{"console.log", "disk.img"}));
}

std::set<std::string> thread_ids() {
  std::set<std::string> ids;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) {
    ids.insert(entry.path().filename().string());
  }
  return ids;
}

// The "Seccomp:" line of a thread's status: 0 none, 2 a filter.
std::string seccomp_mode(const std::string& tid) {
  std::ifstream status("/proc/self/task/" + tid + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Seccomp:", 0) == 0) return line.substr(line.find_first_not_of(" \t", 8));
  }
  return "?";
}

// The seccomp modes of the threads a started machine adds to this process, read until `settled`
// says they are final (a thread installs its filter once it is set up, just after start()) or a
// safety-net deadline passes.
std::vector<std::string> machine_thread_modes(
    bool seccomp, const std::function<bool(const std::vector<std::string>&)>& settled) {
  const std::set<std::string> before = thread_ids();
  MachineConfig config;
  config.kernel_path = test_guest_image("hello");
  config.cmdline = "console=ttyS0 spin";
  config.memory_bytes = 32 << 20;
  config.cpus = 2;
  config.serial.mode = SerialConfig::Mode::kNone;
  config.seccomp = seccomp;
  auto machine = Machine::create(config);
  machine->start();
  std::vector<std::string> modes;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  do {
    modes.clear();
    for (const std::string& tid : thread_ids()) {
      if (before.count(tid) == 0) modes.push_back(seccomp_mode(tid));
    }
  } while (!settled(modes) && std::chrono::steady_clock::now() < deadline);
  machine->stop();
  EXPECT_TRUE(machine->wait(liveness_bound(60s)));
  return modes;
}

TEST_F(LeastPrivilege, EveryMachineThreadRunsUnderSeccompButNotTheCallers) {
  auto all_filtered = [](const std::vector<std::string>& modes) {
    return modes.size() >= 3 &&
           std::count(modes.begin(), modes.end(), "2") == ssize_t(modes.size());
  };
  const std::vector<std::string> modes = machine_thread_modes(true, all_filtered);
  // Two vCPUs and the event loop at least.
  ASSERT_GE(modes.size(), 3u);
  EXPECT_EQ(modes, std::vector<std::string>(modes.size(), "2"));
  EXPECT_EQ(seccomp_mode(std::to_string(::gettid())), "0") << "the library filtered its caller";
}

TEST_F(LeastPrivilege, SeccompOffFiltersNothing) {
  const std::vector<std::string> modes = machine_thread_modes(
      false, [](const std::vector<std::string>& modes) { return modes.size() >= 3; });
  ASSERT_GE(modes.size(), 3u);
  EXPECT_EQ(modes, std::vector<std::string>(modes.size(), "0"));
}

// The child's side of RunsAsAnUnprivilegedUserGivenOnlyKvm: returns its exit status.
int run_as_nobody(const std::string& dir) {
  // A private /dev/kvm node anyone may open, in a tmpfs only this mount namespace sees: the
  // host's own /dev/kvm (root-only here) is left as it is.
  if (::unshare(CLONE_NEWNS) != 0) return 10;
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 11;
  const std::string dev = dir + "/dev";
  if (::mkdir(dev.c_str(), 0755) != 0) return 12;
  if (::mount("tmpfs", dev.c_str(), "tmpfs", 0, "mode=0755") != 0) return 13;
  struct stat kvm {};
  if (::stat("/dev/kvm", &kvm) != 0) return 14;
  const std::string node = dev + "/kvm";
  if (::mknod(node.c_str(), S_IFCHR | 0666, kvm.st_rdev) != 0) return 15;
  if (::chmod(node.c_str(), 0666) != 0) return 16;
  // Nobody, with no supplementary groups and, after setuid, no capabilities.
  if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) return 17;
  if (::geteuid() != 65534) return 18;
  MachineConfig config;
  config.kernel_path = test_guest_image("hello");
  config.cmdline = "console=ttyS0 exit=9";
  config.memory_bytes = 32 << 20;
  config.serial.mode = SerialConfig::Mode::kNone;
  config.debug_exit = true;
  config.kvm_device = node;
  config.disks.push_back({dir + "/disk.img", false, "", {}});
  try {
    return Machine::create(config)->run().exit_status();
  } catch (const std::exception&) {
    return 19;
  }
}

TEST_F(LeastPrivilege, RunsAsAnUnprivilegedUserGivenOnlyKvm) {
  if (::geteuid() != 0)
    GTEST_SKIP() << "needs root to set up a private /dev/kvm and drop to nobody";
  // Everything the unprivileged machine touches must be reachable by nobody.
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  ASSERT_EQ(::chmod((dir_ / "disk.img").c_str(), 0666), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(run_as_nobody(dir_.string()));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  // 9: the guest ran to its exit; 10-19: a setup step failed (see run_as_nobody).
  EXPECT_EQ(WEXITSTATUS(status), 9);
}

}  // namespace
}  // namespace vmm::testing
