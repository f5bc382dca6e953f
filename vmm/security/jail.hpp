#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/machine_config.hpp"

namespace vmm::security {

// `--jail DIR,uid=N,gid=N,...`: where and as whom vmm runs, and what it may use (Firecracker's
// jailer, built in).
struct JailConfig {
  std::string dir{};  // absolute: an existing directory, the jail's root (a tmpfs mounted there)
  uint32_t uid = 0;
  uint32_t gid = 0;
  // The cgroup v2 group (/sys/fs/cgroup/vmm/<cgroup>) that holds the limits; made when one is set.
  std::string cgroup{};
  std::optional<uint64_t> memory_max{};    // memory.max, bytes
  std::optional<uint64_t> cpu_quota_us{};  // cpu.max: this much CPU time per kCpuPeriodUs
  std::optional<uint64_t> pids_max{};      // pids.max
  std::optional<uint64_t> nofile{};        // RLIMIT_NOFILE
  std::optional<uint64_t> fsize{};         // RLIMIT_FSIZE, bytes

  bool has_cgroup_limits() const { return memory_max || cpu_quota_us || pids_max; }
};

inline constexpr uint64_t kCpuPeriodUs = 100'000;

// One host file or directory the jail shows, at the same absolute path as on the host, so that no
// path in the machine's configuration changes.
struct JailMount {
  enum class Kind { kFile, kDirectory, kDevice };
  std::string path;    // in the jail
  std::string source;  // on the host; the same as `path` but for a tap's sysfs folder
  Kind kind = Kind::kFile;
  bool writable = false;
  bool operator==(const JailMount&) const = default;
};

// What a jailed vmm booting `config` needs, sorted by path (a folder before what is in it): the
// kernel, initrd and modules folder read-only; the disks (read-only when the guest can't write
// them); the KVM device; /dev/net/tun and each tap's sysfs folder; the folders vmm makes sockets
// and the console file in; the vhost-user sockets; the huge page setting. Relative paths are taken
// from `cwd`. For a restore (`restore_dir`, --restore DIR, and `config` the restored machine's,
// restored_config()), the snapshot folder read-only in place of the kernel, initrd and modules,
// which the snapshot's RAM holds. Throws vmm::Error for what a jail can't serve (a --share that
// runs a virtiofsd, a tap vmm would have to create, a socket directly in /) or a missing source.
std::vector<JailMount> jail_mounts(const JailConfig& jail, const MachineConfig& config,
                                   const std::string& cwd, const std::string& restore_dir = {});

// Moves this process into the jail, before any thread exists. The calling process stays on the
// host: it makes the cgroup, forks, waits, forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT and returns the
// jailed vmm's exit status (128+S for signal S). The fork, pid 1 of a new PID namespace, enters new
// mount, IPC, UTS and (without --net) network namespaces, pivots into the jail's root, applies the
// rlimits and drops to uid/gid with no capabilities; it forks once more and stays as the
// namespace's init, and that child returns nullopt and goes on as vmm (not pid 1, so signals keep
// their usual meaning). Throws vmm::Error for what fails before the fork; the jail's own setup
// failures are printed ("vmm: --jail DIR: pivot_root: ...") and end it with kExitStatusError.
std::optional<int> enter_jail(const JailConfig& jail, const MachineConfig& config,
                              const std::string& restore_dir = {});

}  // namespace vmm::security
