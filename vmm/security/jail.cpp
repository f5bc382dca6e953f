#include "vmm/security/jail.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "base/util/unique_fd.hpp"
#include "boot/kernel_release.hpp"
#include "vmm/machine.hpp"

namespace vmm::security {

namespace fs = std::filesystem;

namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
constexpr const char* kCgroupParent = "/sys/fs/cgroup/vmm";
// Read by GuestMemory: whether a memfd can have huge pages.
constexpr const char* kShmemHugePages = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
constexpr std::array kForwardedSignals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

std::string absolute(const std::string& path, const std::string& cwd) {
  return fs::path(cwd) / path;  // an absolute `path` replaces cwd
}

// One option's source (`option` names it in errors): what it is on the host decides how it
// is mounted.
JailMount host_mount(const std::string& option, const std::string& path, bool writable) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_errno(option.empty() ? path : option + " " + path);
  JailMount::Kind kind = JailMount::Kind::kFile;
  if (S_ISDIR(st.st_mode)) kind = JailMount::Kind::kDirectory;
  if (S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode)) kind = JailMount::Kind::kDevice;
  return {.path = path, .source = path, .kind = kind, .writable = writable};
}

// vmm creates a socket or the console file there: the folder is shown, writable.
JailMount folder_of(const std::string& option, const std::string& path) {
  const std::string folder = fs::path(path).parent_path();
  if (folder == "/")
    fail("{} {}: a jail can't show all of /; use a folder of its own", option, path);
  return host_mount(option, folder, true);
}

// Where the built initramfs takes its modules from (HostResources' rule), if vmm builds one.
std::optional<std::string> modules_folder(const MachineConfig& config, const std::string& cwd) {
  if (!config.build_initramfs || !config.initrd_path.empty() || config.disks.empty()) {
    return std::nullopt;
  }
  if (!config.modules_dir.empty()) return absolute(config.modules_dir, cwd);
  const auto release =
      boot::kernel_release(read_file(absolute(config.kernel_path, cwd), "--kernel"));
  if (!release) return std::nullopt;
  const std::string folder = "/lib/modules/" + *release;
  std::error_code error;
  // Missing: the jailed vmm says so, as it would outside.
  return fs::is_directory(folder, error) ? std::optional(folder) : std::nullopt;
}

// A tap's sysfs folder (Tap::open reads its tun_flags), at /sys/class/net/<name> as on the host.
JailMount tap_folder(const std::string& tap, uint32_t uid) {
  const std::string path = "/sys/class/net/" + tap;
  std::error_code error;
  const fs::path source = fs::canonical(path, error);
  if (error) {
    fail(
        "--net tap={0}: no such tap, and a jailed vmm can't create one (create it: ip tuntap add "
        "{0} mode tap user {1}; ip link set {0} up)",
        tap, uid);
  }
  return {.path = path, .source = source, .kind = JailMount::Kind::kDirectory, .writable = false};
}

// Sorted by path, one mount per path (writable if any wants it).
std::vector<JailMount> sorted_unique(std::vector<JailMount> mounts) {
  std::sort(mounts.begin(), mounts.end(),
            [](const JailMount& a, const JailMount& b) { return a.path < b.path; });
  std::vector<JailMount> unique;
  for (JailMount& mount : mounts) {
    if (!unique.empty() && unique.back().path == mount.path) {
      unique.back().writable = unique.back().writable || mount.writable;
    } else {
      unique.push_back(std::move(mount));
    }
  }
  return unique;
}

// --- the jail's setup, in the forked process ---

// A step of the setup failed: "--jail DIR: pivot_root: Operation not permitted".
class Step {
 public:
  explicit Step(const JailConfig& jail) : prefix_("--jail " + jail.dir + ": ") {}
  void check(bool ok, const std::string& what) const {
    if (!ok) throw_errno(prefix_ + what);
  }

 private:
  std::string prefix_;
};

void write_text(const std::string& path, const std::string& text) {
  const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    throw_errno(fmt::format("writing {} to {}", text, path));
  }
}

// mkdir -p below `root` (a fresh tmpfs, or a host folder mounted at the same path, where the
// folders exist already).
void make_directories(const std::string& root, const std::string& path) {
  std::string prefix = root;
  for (const fs::path& part : fs::path(path).relative_path()) {
    // Two appends, not "/" + part: GCC 12 at -O3 takes that concatenation for an overlapping
    // memcpy (-Wrestrict).
    prefix += '/';
    prefix += part.string();
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) throw_errno("mkdir " + prefix);
  }
}

void make_mount_point(const std::string& root, const JailMount& mount) {
  const std::string target = root + mount.path;
  if (mount.kind == JailMount::Kind::kDirectory) {
    make_directories(root, mount.path);
    return;
  }
  make_directories(root, fs::path(mount.path).parent_path());
  struct stat st {};
  if (::lstat(target.c_str(), &st) == 0) return;
  const UniqueFd file(::open(target.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600));
  if (!file) throw_errno("creating " + target);
}

void bind(const Step& step, const std::string& root, const JailMount& mount) {
  make_mount_point(root, mount);
  const std::string target = root + mount.path;
  step.check(::mount(mount.source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0,
             "bind-mounting " + mount.source);
  // A bind takes its flags only from this remount.
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC;
  if (mount.kind != JailMount::Kind::kDevice) flags |= MS_NODEV;
  if (!mount.writable) flags |= MS_RDONLY;
  step.check(::mount(nullptr, target.c_str(), nullptr, flags, nullptr) == 0,
             "remounting " + mount.path + (mount.writable ? "" : " read-only"));
}

// Makes the current directory the root. pivot_root(".", "."): the old root ends up on top of the
// new one, and is detached. A host whose root is the initramfs (rootfs, which pivot_root refuses
// with EINVAL: the lab's L1) gets what container runtimes do there: the new root moved over / and
// chrooted into. The host's tree then stays underneath, out of reach once the capabilities are
// gone (escaping a chroot takes CAP_SYS_CHROOT or CAP_SYS_ADMIN).
void enter_root(const Step& step) {
  if (::syscall(SYS_pivot_root, ".", ".") == 0) {
    step.check(::umount2(".", MNT_DETACH) == 0, "detaching the host's root");
    return;
  }
  const int pivot_error = errno;
  struct statfs root {};
  const bool initramfs = pivot_error == EINVAL && ::statfs("/", &root) == 0 &&
                         (root.f_type == RAMFS_MAGIC || root.f_type == TMPFS_MAGIC);
  errno = pivot_error;
  step.check(initramfs, "pivot_root");
  step.check(::mount(".", "/", nullptr, MS_MOVE, nullptr) == 0, "moving its root over /");
  step.check(::chroot(".") == 0, "chroot");
  step.check(::chdir("/") == 0, "chdir /");
}

// The new root: a small tmpfs on DIR holding the mounts, a /proc of the new PID namespace (the
// console reopens its fds through /proc/self/fd) and a /tmp (snapshot=on overlays), then
// enter_root; then the root is made read-only.
void build_root(const Step& step, const JailConfig& jail, const std::vector<JailMount>& mounts,
                const std::string& cwd) {
  const std::string& root = jail.dir;
  step.check(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "making / private");
  constexpr unsigned long kPlain = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  step.check(::mount("tmpfs", root.c_str(), "tmpfs", kPlain, "mode=0755,size=1m") == 0,
             "mounting its tmpfs");
  // /tmp first: what is shown below it (a disk in /tmp) goes on top.
  make_directories(root, "/tmp");
  const std::string tmp = root + "/tmp";
  step.check(::mount("tmpfs", tmp.c_str(), "tmpfs", kPlain, "mode=1777") == 0, "mounting /tmp");
  for (const JailMount& mount : mounts) bind(step, root, mount);
  make_directories(root, cwd);
  make_directories(root, "/proc");
  // subset=pid (Linux 5.8) leaves out /proc/sys and the rest that is not a process's.
  const std::string proc = root + "/proc";
  if (::mount("proc", proc.c_str(), "proc", kPlain, "subset=pid") != 0) {
    step.check(errno == EINVAL && ::mount("proc", proc.c_str(), "proc", kPlain, nullptr) == 0,
               "mounting /proc");
  }
  step.check(::chdir(root.c_str()) == 0, "chdir");
  enter_root(step);
  step.check(
      ::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | kPlain, nullptr) == 0,
      "remounting its root read-only");
  step.check(::chdir(cwd.c_str()) == 0, "chdir " + cwd);
  ::setenv("TMPDIR", "/tmp", 1);
}

void apply_rlimits(const Step& step, const JailConfig& jail) {
  const auto set = [&](int resource, uint64_t value, const char* name) {
    const rlimit limit{value, value};
    step.check(::setrlimit(resource, &limit) == 0, fmt::format("setrlimit {} {}", name, value));
  };
  if (jail.nofile) set(RLIMIT_NOFILE, *jail.nofile, "RLIMIT_NOFILE");
  if (jail.fsize) {
    set(RLIMIT_FSIZE, *jail.fsize, "RLIMIT_FSIZE");
    // A write past the limit fails (EFBIG: the guest sees an I/O error) instead of killing vmm.
    ::signal(SIGXFSZ, SIG_IGN);
  }
}

// Changing every uid from 0 clears the permitted, effective and ambient capabilities; the bounding
// set is emptied first, and no_new_privs keeps an exec from gaining any back.
void drop_privileges(const Step& step, const JailConfig& jail) {
  for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    step.check(::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0,
               fmt::format("dropping capability {}", cap));
  }
  step.check(::setgroups(0, nullptr) == 0, "setgroups");
  step.check(::setresgid(jail.gid, jail.gid, jail.gid) == 0, fmt::format("setgid {}", jail.gid));
  step.check(::setresuid(jail.uid, jail.uid, jail.uid) == 0, fmt::format("setuid {}", jail.uid));
  step.check(::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  step.check(::syscall(SYS_capget, &header, data.data()) == 0, "capget");
  for (const auto& set : data) {
    if (set.effective != 0 || set.permitted != 0 || set.inheritable != 0) {
      fail("--jail {}: capabilities left after setuid {}", jail.dir, jail.uid);
    }
  }
}

// The process signals go to: the jail's init for the host side, vmm for the init.
std::atomic<pid_t> g_signal_target{0};

void forward_signal(int signal) {
  const pid_t target = g_signal_target.load();
  if (target > 0) ::kill(target, signal);
}

void set_forwarding(void (*handler)(int)) {
  for (int signal : kForwardedSignals) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(signal, &action, nullptr);
  }
}

// Waits for `child` (reaping whatever else ends meanwhile: the namespace's orphans come to its
// init); its exit status, or 128+S.
int wait_for(pid_t child) {
  while (true) {
    int status = 0;
    const pid_t ended = ::waitpid(-1, &status, 0);
    if (ended < 0 && errno == EINTR) continue;
    if (ended < 0) return kExitStatusError;
    if (ended != child) continue;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

// The jail's cgroup v2 group, removed when the jail has ended.
class JailCgroup {
 public:
  explicit JailCgroup(const JailConfig& jail)
      : path_(std::string(kCgroupParent) + "/" + jail.cgroup) {
    const std::string name = "--jail " + jail.dir + ": cgroup " + path_;
    struct statfs root {};
    if (::statfs(kCgroupRoot, &root) != 0 || root.f_type != CGROUP2_SUPER_MAGIC) {
      fail("{}: {} is not a cgroup v2 hierarchy (mount -t cgroup2 none {})", name, kCgroupRoot,
           kCgroupRoot);
    }
    std::string controllers;
    if (jail.memory_max) controllers += " +memory";
    if (jail.cpu_quota_us) controllers += " +cpu";
    if (jail.pids_max) controllers += " +pids";
    try {
      if (::mkdir(kCgroupParent, 0755) != 0 && errno != EEXIST) throw_errno("mkdir");
      write_text(std::string(kCgroupRoot) + "/cgroup.subtree_control", controllers.substr(1));
      write_text(std::string(kCgroupParent) + "/cgroup.subtree_control", controllers.substr(1));
      // A group left by a jail that was killed goes, if nothing is in it.
      if (::mkdir(path_.c_str(), 0755) != 0 &&
          (errno != EEXIST || ::rmdir(path_.c_str()) != 0 || ::mkdir(path_.c_str(), 0755) != 0)) {
        throw_errno("mkdir (another jail's?)");
      }
      if (jail.memory_max) write_text(path_ + "/memory.max", std::to_string(*jail.memory_max));
      if (jail.cpu_quota_us) {
        write_text(path_ + "/cpu.max", fmt::format("{} {}", *jail.cpu_quota_us, kCpuPeriodUs));
      }
      if (jail.pids_max) write_text(path_ + "/pids.max", std::to_string(*jail.pids_max));
    } catch (const Error& e) {
      ::rmdir(path_.c_str());
      fail("{}: {}", name, e.what());
    }
  }
  JailCgroup(const JailCgroup&) = delete;
  JailCgroup& operator=(const JailCgroup&) = delete;
  ~JailCgroup() {
    if (::rmdir(path_.c_str()) != 0)
      spdlog::warn("cgroup {}: rmdir: {}", path_, std::strerror(errno));
  }

  void add(pid_t pid) const { write_text(path_ + "/cgroup.procs", std::to_string(pid)); }

 private:
  std::string path_;
};

// The jail's init (pid 1 of its PID namespace): sets the jail up once the host side says go, then
// forks vmm and waits for it. Returns only in vmm.
void run_jail_init(const JailConfig& jail, const MachineConfig& config,
                   const std::vector<JailMount>& mounts, const std::string& cwd, UniqueFd go) {
  set_forwarding(forward_signal);  // pid 1 ignores what it has no handler for
  const Step step(jail);
  try {
    char byte = 0;
    if (::read(go.get(), &byte, 1) != 1) std::_Exit(kExitStatusError);  // the host side failed
    go.reset();
    const int network = config.nets.empty() ? CLONE_NEWNET : 0;
    step.check(::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | network) == 0, "unshare");
    build_root(step, jail, mounts, cwd);
    apply_rlimits(step, jail);
    drop_privileges(step, jail);
    // Set after setuid (which clears it): the jail ends with the process that waits for it.
    step.check(::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0, "PR_SET_PDEATHSIG");
    std::fflush(nullptr);
    const pid_t vmm = ::fork();
    step.check(vmm >= 0, "fork");
    if (vmm == 0) {
      set_forwarding(SIG_DFL);
      return;
    }
    g_signal_target = vmm;
    std::_Exit(wait_for(vmm));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmm: %s\n", e.what());
    std::_Exit(kExitStatusError);
  }
}

}  // namespace

std::vector<JailMount> jail_mounts(const JailConfig& jail, const MachineConfig& config,
                                   const std::string& cwd, const std::string& restore_dir) {
  std::vector<JailMount> mounts;
  if (!restore_dir.empty()) {
    mounts.push_back(host_mount("--restore", absolute(restore_dir, cwd), false));
  } else {
    mounts.push_back(host_mount("--kernel", absolute(config.kernel_path, cwd), false));
    if (!config.initrd_path.empty()) {
      mounts.push_back(host_mount("--initrd", absolute(config.initrd_path, cwd), false));
    }
    if (const auto modules = modules_folder(config, cwd)) {
      mounts.push_back(host_mount("--modules", *modules, false));
    }
  }
  for (const DiskConfig& disk : config.disks) {
    const bool guest_writes = !disk.read_only && disk.snapshot == DiskConfig::Snapshot::kOff;
    mounts.push_back(host_mount("--disk", absolute(disk.path, cwd), guest_writes));
  }
  mounts.push_back(host_mount("", config.kvm_device, true));
  if (!config.nets.empty()) mounts.push_back(host_mount("--net", "/dev/net/tun", true));
  for (const NetConfig& net : config.nets) mounts.push_back(tap_folder(net.tap, jail.uid));
  if (config.vsock) mounts.push_back(folder_of("--vsock", absolute(config.vsock->uds_path, cwd)));
  if (!config.api_socket.empty()) {
    mounts.push_back(folder_of("--api-socket", absolute(config.api_socket, cwd)));
  }
  if (config.serial.mode == SerialConfig::Mode::kFile) {
    mounts.push_back(folder_of("--serial file:", absolute(config.serial.path, cwd)));
  }
  for (const ShareConfig& share : config.shares) {
    if (!share.host_dir.empty()) {
      fail(
          "--share {}:{}: a jailed vmm can't run virtiofsd (it needs root); run it yourself and "
          "give --share socket=PATH,tag={}",
          share.host_dir, share.tag, share.tag);
    }
    mounts.push_back(host_mount("--share socket=", absolute(share.socket_path, cwd), true));
  }
  for (const VhostUserConfig& device : config.vhost_user) {
    mounts.push_back(host_mount("--vhost-user socket=", absolute(device.socket_path, cwd), true));
  }
  if (::access(kShmemHugePages, R_OK) == 0) {
    mounts.push_back(host_mount("", kShmemHugePages, false));
  }
  return sorted_unique(std::move(mounts));
}

std::optional<int> enter_jail(const JailConfig& jail, const MachineConfig& config,
                              const std::string& restore_dir) {
  const std::string cwd = fs::current_path();
  const std::vector<JailMount> mounts = jail_mounts(jail, config, cwd, restore_dir);
  struct stat st {};
  if (::stat(jail.dir.c_str(), &st) != 0) throw_errno("--jail " + jail.dir);
  if (!S_ISDIR(st.st_mode)) fail("--jail {}: not a directory", jail.dir);
  std::optional<JailCgroup> cgroup;
  if (jail.has_cgroup_limits()) cgroup.emplace(jail);

  std::array<int, 2> pipe_fds{};
  if (::pipe2(pipe_fds.data(), O_CLOEXEC) != 0) throw_errno("--jail " + jail.dir + ": pipe");
  UniqueFd go_read(pipe_fds[0]);
  UniqueFd go_write(pipe_fds[1]);
  if (::unshare(CLONE_NEWPID) != 0) {
    throw_errno(fmt::format("--jail {}: unshare(CLONE_NEWPID) (the jail needs root)", jail.dir));
  }
  std::fflush(nullptr);
  const pid_t init = ::fork();
  if (init < 0) throw_errno("--jail " + jail.dir + ": fork");
  if (init == 0) {
    go_write.reset();
    run_jail_init(jail, config, mounts, cwd, std::move(go_read));
    return std::nullopt;
  }
  go_read.reset();
  g_signal_target = init;
  set_forwarding(forward_signal);
  try {
    if (cgroup) cgroup->add(init);
  } catch (const Error& e) {
    ::kill(init, SIGKILL);
    wait_for(init);
    fail("--jail {}: {}", jail.dir, e.what());
  }
  const char go = 1;
  if (::write(go_write.get(), &go, 1) != 1) throw_errno("--jail " + jail.dir + ": pipe");
  go_write.reset();
  spdlog::info("--jail {}: vmm runs as pid {} on the host", jail.dir, init);
  return wait_for(init);
}

}  // namespace vmm::security
