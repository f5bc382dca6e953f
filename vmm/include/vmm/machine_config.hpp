#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vmm {

// Where the guest's serial console (COM1) goes. Output waits in the UART's bounded buffer until
// the machine's event-loop thread writes it (never blocking: an fd is written through a
// non-blocking description of vmm's own); a sink that takes no more makes the guest's UART read
// busy, not a vCPU wait.
struct SerialConfig {
  enum class Mode {
    kStdio,     // this process's stdout (and stdin as input; a terminal is put in raw mode)
    kFile,      // written to `path` (created or truncated)
    kFd,        // written to `fd` (not owned: it must stay open while the machine exists)
    kCallback,  // handed to `callback`, on the event-loop thread, in the order the guest wrote it
    kNone,
  };
  Mode mode = Mode::kStdio;
  std::string path;                                        // kFile
  int fd = -1;                                             // kFd
  std::function<void(std::span<const uint8_t>)> callback;  // kCallback
};

// A virtio-vsock device. Host side: a Unix socket at `uds_path` where host programs connect and
// send "CONNECT <port>\n" to reach the guest's port (answered "OK <host port>\n"); a guest
// connecting to host port P reaches the Unix socket `<uds_path>_<P>` (Firecracker's convention).
struct VsockConfig {
  uint32_t guest_cid = 3;  // 3 .. 2^32-2 (0-2 and -1 are reserved)
  std::string uds_path;
};

// A virtio-blk disk backed by a raw image file (or a block device).
// A device's rate limit (token buckets, Firecracker's model): bytes and operations (a disk's
// requests, a NIC's packets) a second, each with a burst, the most that may go at once after an
// idle spell. A rate of 0 leaves that side unlimited; a burst of 0 is one second's worth of the
// rate. A guest over its budget waits: its requests or packets stay in its rings, none is dropped.
struct RateLimitConfig {
  uint64_t bytes_per_second = 0;
  uint64_t bytes_burst = 0;
  uint64_t ops_per_second = 0;
  uint64_t ops_burst = 0;
  bool operator==(const RateLimitConfig&) const = default;
};

struct DiskConfig {
  // How requests reach the image: io_uring where the kernel allows it, else a thread pool.
  enum class IoEngine { kAuto, kIoUring, kThreadPool };

  // QEMU's -snapshot: the image is opened read-only (a shared lock, so many machines can boot one
  // base image) and the guest's writes go to a private overlay, discarded when the machine goes.
  enum class Snapshot {
    kOff,
    kFile,    // the overlay is a sparse, unlinked temporary file in $TMPDIR (/tmp without it)
    kMemory,  // the overlay is anonymous memory
  };

  std::string path;
  bool read_only = false;  // enforced on the host: the image is opened read-only
  std::string serial;      // what the guest reads as the disk's ID; at most kMaxDiskSerialBytes
  IoEngine io_engine = IoEngine::kAuto;
  Snapshot snapshot = Snapshot::kOff;
  RateLimitConfig rate_limit{};  // data read or written; requests of any kind
};

// A virtio-net NIC backed by a tap device.
struct NetConfig {
  std::string tap;  // an existing tap (created when vmm has CAP_NET_ADMIN)
  // Unset: a stable locally administered address derived from the tap's name.
  std::optional<std::array<uint8_t, 6>> mac;
  RateLimitConfig rx_rate_limit{};  // frames the guest receives
  RateLimitConfig tx_rate_limit{};  // frames the guest sends (waiting in its transmit ring)
};

// A host directory the guest mounts with `mount -t virtiofs TAG DIR`: a virtio-fs device whose
// requests a virtiofsd serves over vhost-user. Either vmm starts Debian's virtiofsd for
// `host_dir` (and stops it with the machine), or `socket_path` names the socket of a virtiofsd
// (or any virtio-fs vhost-user backend) the user runs.
struct ShareConfig {
  std::string host_dir{};     // vmm runs virtiofsd for it
  std::string socket_path{};  // or: a backend's vhost-user socket
  std::string tag{};          // what the guest mounts: 1 to 36 bytes
  // host_dir only, enforced on the host: virtiofsd serves a read-only bind mount of the
  // directory, so the guest's writes fail with EROFS whatever it does.
  bool read_only = false;
  // MachineConfig::command only: where the guest's init mounts it ("" : not mounted).
  std::string guest_path{};
};

// A device whose queues a vhost-user backend process serves (its socket at `socket_path`).
struct VhostUserConfig {
  enum class Type { kFs, kBlock };
  Type type = Type::kFs;
  std::string socket_path{};
  std::string tag{};  // kFs: the tag the guest mounts
};

// A virtio-console device with one console port (the guest's hvc0) on this process's stdin and
// stdout: faster than the UART for a guest getty (console=hvc0).
struct ConsoleConfig {
  bool enabled = false;
};

// A command the guest runs instead of an init, its output and exit status vmm's (`vmm run`):
// vmm builds an initramfs whose init mounts the shares that have a guest_path (the one at "/" as
// the root, read-only, under a writable tmpfs overlay), then runs `argv` as uid/gid in `cwd` with
// `env`, its stdin, stdout and stderr on virtio-console ports that vmm connects to its own.
struct GuestCommand {
  std::vector<std::string> argv{};
  std::vector<std::string> env{};  // NAME=value
  std::string cwd{};
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups{};
};

// Everything needed to assemble a VM. Built by the CLI or by a library user, checked by
// validate_config() before anything is created.
// What vmm puts first on every kernel command line it composes.
inline constexpr const char* kDefaultCmdline = "console=ttyS0 panic=-1";

struct MachineConfig {
  std::string kernel_path;
  std::string initrd_path;  // empty: none (see modules_dir)
  // The kernel command line is composed: kDefaultCmdline, then what vmm knows (root=/dev/vda rw
  // for a first disk when nothing names a root; virtio_mmio.device= entries with acpi=off), then
  // `append`. A set `cmdline` replaces all of that: the kernel gets exactly it.
  std::optional<std::string> cmdline;
  std::string append;
  // With a disk and no initrd, vmm builds an initramfs in memory for the kernel: the virtio and
  // root filesystem modules (from modules_dir; empty: /lib/modules/<the kernel's release>) and a
  // small init that mounts the root disk and runs its init. false: boot without an initramfs
  // (a kernel with virtio built in).
  bool build_initramfs = true;
  std::string modules_dir;
  uint32_t cpus = 1;
  uint64_t memory_bytes = uint64_t{512} << 20;
  SerialConfig serial;
  std::vector<DiskConfig> disks;  // the guest's vda, vdb, ... in this order
  std::vector<NetConfig> nets;    // the guest's eth0, eth1, ... in this order
  std::optional<VsockConfig> vsock;
  std::vector<ShareConfig> shares;          // virtio-fs devices, after the NICs
  std::vector<VhostUserConfig> vhost_user;  // after the shares
  ConsoleConfig console;
  // The virtiofsd a ShareConfig::host_dir runs; empty: the first of kVirtiofsdPaths that exists.
  std::string virtiofsd_path;
  std::optional<GuestCommand> command;
  // A Unix socket to serve the control API on (JSON: status, pause, resume, stop, config); empty:
  // none.
  std::string api_socket;
  uint32_t timeout_seconds = 0;  // 0: no timeout
  // Least privilege: once set up, each of the machine's threads (vCPUs, event loop, control
  // socket, disk workers) runs under a seccomp allow-list of the system calls it needs; any other
  // call kills the process with a one-line report on stderr. false: no filters (debugging). Only
  // threads the machine starts are filtered: a SerialConfig::kCallback console callback runs
  // under a vCPU thread's filter (it may write to fds, lock, allocate).
  bool seccomp = true;
  std::string kvm_device = "/dev/kvm";
  // The test-guest exit port (I/O port 0xf4): a byte V written there stops the machine with
  // MachineExit::kDebugExit and vmm's exit status V, so the guest chooses the status. Off by
  // default: an untrusted guest must not pass for a timeout (124) or a stop (5); without it a write
  // to 0xf4 is an unhandled port like any other.
  bool debug_exit = false;
};

// What Machine::restore() needs: a snapshot directory (Machine::snapshot) and what the restoring
// process chooses for itself. The CPUs, memory, devices and their order come from the snapshot.
struct RestoreConfig {
  std::string snapshot_dir;
  // Replacements for the snapshot's devices; unset keeps the snapshot's. Each list must have as
  // many entries as the snapshot's (the guest's devices can't change under it): a clone gets its
  // own disk overlay, tap and MAC, vsock CID and socket. A disk must have the snapshot's size, and
  // the content it had then (vmm checks the size only).
  std::optional<std::vector<DiskConfig>> disks;
  std::optional<std::vector<NetConfig>> nets;
  std::optional<VsockConfig> vsock;
  // As in MachineConfig; never taken from the snapshot.
  SerialConfig serial;
  std::string api_socket;
  uint32_t timeout_seconds = 0;
  bool seccomp = true;
  std::string kvm_device = "/dev/kvm";
  // Not recorded in a snapshot: whether the guest may choose vmm's exit status is the restoring
  // process's choice, never the snapshot file's.
  bool debug_exit = false;
};

// A restore of `snapshot_dir` with what `config` sets: its console, control socket, timeout,
// seccomp, KVM device and debug-exit port, and its disks, NICs and vsock where it has any (how the
// vmm command's --restore and the C API take their options). The rest of `config` is unused.
RestoreConfig restore_config(const std::string& snapshot_dir, const MachineConfig& config);

// Where Debian keeps virtiofsd: its own package (Debian 13 on), then QEMU's (Debian 12).
inline constexpr const char* kVirtiofsdPaths[] = {"/usr/libexec/virtiofsd",
                                                  "/usr/lib/qemu/virtiofsd"};
// VIRTIO_FS's tag field.
inline constexpr size_t kMaxShareTagBytes = 36;

inline constexpr uint64_t kMinMemoryBytes = uint64_t{16} << 20;
inline constexpr uint64_t kMaxMemoryBytes = uint64_t{1} << 40;
// The MADT describes CPUs with xAPIC entries (8-bit APIC IDs; 0xff is broadcast).
inline constexpr uint32_t kMaxCpus = 254;
// VIRTIO_BLK_ID_BYTES: the ID field of a virtio-blk GET_ID request.
inline constexpr size_t kMaxDiskSerialBytes = 20;
// Each virtio device has an interrupt line of its own (GSIs 5-23 but for 8).
inline constexpr size_t kMaxVirtioDevices = 18;

// The virtio devices `config` gives the guest: disks, NICs, vsock, shares, vhost-user devices, and
// the console (a command's included).
size_t virtio_device_count(const MachineConfig& config);

// Throws vmm::Error naming the offending field ("--memory 1M: ...") for any value that can't work.
// Checks only what can be checked without /dev/kvm; the machine checks the rest (KVM's vCPU limit).
void validate_config(const MachineConfig& config);

}  // namespace vmm
