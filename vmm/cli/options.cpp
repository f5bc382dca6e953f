#include "vmm/cli/options.hpp"

#include <fmt/format.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "base/util/parse_number.hpp"
#include "base/util/size.hpp"
#include "vmm/machine.hpp"
#include "vmm/machine/rate_limit_keys.hpp"

namespace vmm::cli {

namespace {

constexpr const char* kDescription =
    "vmm: a KVM virtual machine monitor that boots a Linux kernel directly (no firmware).\n";

constexpr const char* kFooter = R"(Examples:
  vmm --kernel /boot/vmlinuz-$(uname -r) --disk debian.img
  vmm --kernel vmlinuz --disk root.img --modules /tmp/kernel-pkg/lib/modules/6.1.0-57-amd64
  vmm --kernel /boot/vmlinuz --initrd initrd.img --cpus 2 --memory 1G --append "quiet"
  vmm --kernel bzImage --disk root.img --disk data.img,readonly=on,serial=data01
  vmm --kernel bzImage --initrd initrd.img --net tap=tap0,mac=02:00:00:00:00:01
  vmm --kernel bzImage --cmdline "console=ttyS0 panic=-1 quiet" --timeout 60 --serial file:boot.log

The kernel command line is vmm's defaults ("console=ttyS0 panic=-1"), then what vmm knows
(root=/dev/vda rw, or ro for a readonly=on first disk, when nothing names a root; with acpi=off,
a virtio_mmio.device= entry per virtio device), then --append's words, which win. --cmdline
replaces all of it: the kernel gets exactly that text. -v prints the final command line.

A stock distribution kernel (Debian, Ubuntu, Alpine: virtio built as modules) boots from a disk
with no --initrd: vmm reads the kernel's release, takes the virtio, vsock and root filesystem
modules (and their dependencies) from /lib/modules/<release> or --modules DIR, and builds an
initramfs in memory whose small init loads them, mounts the root disk (root=, rootfstype=,
rootflags=, ro/rw, rootwait) and runs its /sbin/init (or init=). --modules none boots the disk
without an initramfs, for a kernel with virtio and its root filesystem built in. A given --initrd
is used as it is.

Disks are virtio-blk devices on virtio-mmio, described in the ACPI DSDT (stock kernels find them
once the virtio_mmio and virtio_blk modules are loaded). --disk PATH takes a raw image or a block
device; options after the path, comma-separated:
  readonly=on      the guest cannot write (the image is opened read-only on the host)
  snapshot=on      writes go to a private overlay, discarded at exit (a sparse, unlinked file in
                   $TMPDIR; mem: in memory); the image is only read: many vmm can boot it at once
  serial=ID        the disk's ID as the guest reads it (/sys/block/vda/serial), up to 20 bytes
  io=MODE          auto (default: io_uring, else a thread pool), io_uring, or threads
  bw=RATE          a rate limit: bytes read or written a second (10M); bw_burst=SIZE, the most
                   that goes at once after an idle spell (default: a second's worth)
  iops=N           a rate limit: requests a second; iops_burst=N as above
                   A guest over its limit waits (nothing is refused); the control socket's
                   set-rate-limit changes the limits of a running machine.
The guest sees size/512 sectors (a trailing partial sector is not visible). vmm locks each image
as QEMU does: an image another vmm or QEMU writes is refused (even readonly=on), and so is writing
one they read.

NICs are virtio-net devices on virtio-mmio (modules virtio_mmio and virtio_net in the guest),
each over a tap device: --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]. vmm attaches to an existing tap
(create one for your user: ip tuntap add tap0 mode tap user $USER; ip link set tap0 up), or creates
it when it runs with CAP_NET_ADMIN. Without mac=, the guest gets a stable locally administered
address derived from the tap's name. Rate limits, as for disks, on what the guest receives
(rx_bw=, rx_bw_burst=, rx_iops=, rx_iops_burst=: packets) and sends (tx_...): a packet over the
limit waits (received ones in the tap, sent ones in the guest's ring).
scripts/vmm-net.sh sets up a tap on a bridge, with NAT.

--vsock cid=N,socket=PATH gives the guest a virtio-vsock device (module vmw_vsock_virtio_transport)
with context ID N (3 or more). Host programs reach guest port P by connecting to the Unix socket
PATH and sending "CONNECT P\n" (answered "OK <host port>\n", then the stream is the connection);
a guest connecting to host CID 2, port P reaches the Unix socket PATH_P, which a host program
listens on.

Shared directories: --share HOST_DIR:TAG[,readonly=on] gives the guest a virtio-fs device (modules
virtio_mmio, virtiofs) that it mounts with 'mount -t virtiofs TAG /mnt'. vmm starts Debian's
virtiofsd for it (/usr/libexec/virtiofsd or /usr/lib/qemu/virtiofsd; --virtiofsd PATH picks
another; it needs root), in a mount and network namespace of its own, and stops it with the
guest; readonly=on makes the share a read-only mount there, so writes fail whatever the guest
does. --share socket=PATH,tag=TAG uses a virtio-fs backend you run instead. --vhost-user
fs|blk,socket=PATH[,tag=TAG] attaches any vhost-user device (fs, blk). If a backend dies, the
guest's requests to it fail with I/O errors and vmm says so once; nothing waits for it.

Least privilege: once the guest starts, each vmm thread (vCPUs, event loop, control socket, disk
workers, the main thread) runs under a seccomp filter that allows only the system calls it needs.
A forbidden call is reported on stderr ("vmm: seccomp: <thread> thread made a forbidden system
call: <name>") and kills vmm with SIGSYS; --seccomp off runs without filters, for debugging.

--jail DIR,uid=N,gid=N (run as root) confines vmm before it opens anything, as Firecracker's
jailer does: new mount, PID, IPC, UTS and (without --net) network namespaces; as root, a tmpfs on
DIR (an existing directory) holding only what this machine needs, bind-mounted at the same paths
as on the host (kernel, initrd, modules and read-only disks read-only; the other disks, the KVM
device, /dev/net/tun; the folders of --api-socket, --vsock's socket and --serial file:, so put
them in folders of their own); then uid N, gid N (not 0), no capabilities. More options:
  cgroup=NAME   the cgroup v2 group /sys/fs/cgroup/vmm/NAME (default: DIR's name), made when a
                limit is set: memory=SIZE (memory.max: RAM, vmm and the jail's /tmp), cpus=N
                (cpu.max: 1.5 is a CPU and a half), pids=N (pids.max)
  nofile=N      RLIMIT_NOFILE          fsize=SIZE   RLIMIT_FSIZE (more than the largest disk)
A tap must exist and belong to uid N (ip tuntap add tap0 mode tap user N); a --share HOST_DIR
needs a virtiofsd run outside (--share socket=); snapshot=on overlays go to the jail's /tmp, in
memory. With --restore DIR, DIR is shown read-only in place of the kernel. The process you
started stays outside, waits and forwards signals. E.g.
  vmm --jail /srv/jail/vm1,uid=1000,gid=1000,memory=1G,pids=64 --kernel ... --disk ...

The guest console is COM1 (ttyS0): on this terminal by default, in raw mode while the guest
runs (Ctrl-C ends vmm). --console puts a virtio-console (hvc0, module virtio_console) on the
terminal instead, which is faster than the UART (the kernel's early messages then need
--serial file:PATH). Log messages go to stderr.

vmm run [OPTIONS] -- CMD [ARGS...] runs one command in a guest whose root is this host's root,
and exits with its status (vmm run --help).

--api-socket PATH serves a control API on a Unix socket: one JSON request per line, one JSON
response per line. {"command":"status"} answers {"ok":true,"state":"running","uptime_ms":N};
"pause", "resume" and "stop" change the state; "config" shows the configuration;
{"command":"snapshot","path":DIR} writes a snapshot (below); "metrics" shows each device's
requests, bytes, errors and rate-limit waits, each vCPU's exits and the event loop's longest
handler, to spot a misbehaving guest. Try:
  echo '{"command":"status"}' | socat - UNIX-CONNECT:PATH

Snapshots: vmm snapshot --api-socket PATH [--paused] DIR asks the vmm serving PATH to write its
guest to DIR (created): manifest.json, the RAM as a sparse file, every vCPU's and device's state.
The guest pauses for it (after its disk requests in flight complete) and goes on afterwards, or
stays paused with --paused. vmm --restore DIR continues it in a new process, RAM mapped
copy-on-write from DIR/memory (many restores share one page cache). The disks must be as they
were at the snapshot (snapshot with --paused and stop that vmm, or give the disks snapshot=on).
--restore takes --disk, --net, --vsock (each list as long as the snapshot's), --serial,
--api-socket, --timeout, --seccomp and --debug-exit; the CPUs, memory and kernel come from the
snapshot, and a snapshot restores only into the same vmm version on the same CPU model.
A paused guest's vCPUs and devices are held and its clock stops; --timeout counts wall time,
paused time included.

Exit status:
  0    the guest powered off (ACPI S5, e.g. 'poweroff')
  1    vmm failed (bad input, KVM error, or the guest could not be run)
  2    bad command line
  3    the guest rebooted ('reboot', i8042 or ACPI reset, triple fault: logged with its registers)
  4    the guest panicked (reported through pvpanic; use panic=-1 so it also resets), or the
       init of the initramfs vmm built could not mount the root (it says why on the console)
  5    stopped by the host (the control API's "stop")
  124  --timeout expired
  V    a test guest wrote V to the debug-exit port (I/O port 0xf4), with --debug-exit only;
       without it the port is not there, and no guest chooses vmm's exit status
)";

constexpr const char* kRunDescription =
    "vmm run: runs CMD in a guest whose root is this host's root (shared read-only, with a\n"
    "writable tmpfs overlay), in the current directory (shared read-write), as you, with your\n"
    "environment; exits with CMD's status.\n";

constexpr const char* kRunFooter = R"(Examples:
  vmm run -- uname -r
  vmm run --kernel arch/x86/boot/bzImage --modules /tmp/mods/lib/modules/6.12.0 -- ./run-tests.sh
  vmm run --share /srv/data:data,readonly=on --memory 2G -- sh -c 'wc -l /srv/data/*'

CMD's stdout and stderr reach vmm's stdout and stderr, kept apart (virtio-console ports, not the
kernel's console); vmm's stdin, if it is a pipe or a terminal, is CMD's. The kernel's console
goes where --serial says (none by default). Ctrl-C is passed to CMD; a second Ctrl-C stops the
guest. The shares need a virtiofsd (Debian 12: /usr/lib/qemu/virtiofsd, from
qemu-system-common), which needs root. The guest kernel needs virtio_mmio, virtio_console,
virtiofs and overlay (built in or as modules in --modules DIR, default /lib/modules/<release>).

Exit status:
  N    CMD's status (128+S if signal S killed it; 126: not executable; 127: not found)
  125  CMD's status never came: the guest panicked, timed out, or vmm failed before CMD ran or
       while it ran (vmm says which on stderr)
  2    bad command line
)";

// The tags of the shares `vmm run` makes: the host's root and the working directory.
constexpr const char* kRunRootTag = "vmm-root";
constexpr const char* kRunWorkTag = "vmm-cwd";

// What of the caller's environment makes no sense in a guest: its sockets, agents, display and
// session (none of them is there).
constexpr std::array<std::string_view, 19> kHostOnlyVariables = {"DBUS_SESSION_BUS_ADDRESS",
                                                                 "DISPLAY",
                                                                 "GPG_AGENT_INFO",
                                                                 "INVOCATION_ID",
                                                                 "JOURNAL_STREAM",
                                                                 "LISTEN_FDS",
                                                                 "LISTEN_PID",
                                                                 "NOTIFY_SOCKET",
                                                                 "OLDPWD",
                                                                 "PWD",
                                                                 "SSH_AGENT_PID",
                                                                 "SSH_AUTH_SOCK",
                                                                 "SSH_CLIENT",
                                                                 "SSH_CONNECTION",
                                                                 "SSH_TTY",
                                                                 "TMUX",
                                                                 "WAYLAND_DISPLAY",
                                                                 "XAUTHORITY",
                                                                 "XDG_RUNTIME_DIR"};

std::vector<std::string> guest_environment(const std::vector<std::string>& environment,
                                           const std::string& cwd) {
  std::vector<std::string> guest;
  for (const std::string& variable : environment) {
    const std::string_view name = std::string_view(variable).substr(0, variable.find('='));
    if (variable.find('=') == std::string::npos ||
        std::find(kHostOnlyVariables.begin(), kHostOnlyVariables.end(), name) !=
            kHostOnlyVariables.end()) {
      continue;
    }
    guest.push_back(variable);
  }
  guest.push_back("PWD=" + cwd);
  return guest;
}

std::string absolute_path(const std::string& path, const std::string& cwd) {
  if (!path.empty() && path.front() == '/') return path;
  return cwd == "/" ? "/" + path : cwd + "/" + path;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

// One "key=value" (or bare "key") piece of a comma-separated option value.
struct OptionPart {
  std::string text;
  std::string key;
  std::optional<std::string> value;
};

OptionPart split_part(const std::string& part) {
  const size_t equals = part.find('=');
  if (equals == std::string::npos) return {part, part, std::nullopt};
  return {part, part.substr(0, equals), part.substr(equals + 1)};
}

// A rate limit's key (rate_limit_keys) in `part` of --OPTION `text`: false if `key` is not one.
// Its value is a size ("10M") or a count, never 0 (leaving the key out is unlimited).
bool parse_rate_limit_part(const char* option, const std::string& text, const OptionPart& part,
                           std::string_view prefix, RateLimitConfig& limit) {
  // 0 for a value that is missing or no amount (GCC 12 at -O2 takes an optional here for one read
  // uninitialized: -Wmaybe-uninitialized).
  uint64_t amount = 0;
  if (part.value) amount = parse_size(*part.value).value_or(0);
  if (!set_rate_limit_field(limit, prefix, part.key, amount)) return false;
  if (amount == 0) {
    fail("--{} {}: {} is not a positive amount a second (a count, or a size such as 10M)", option,
         text, part.text);
  }
  return true;
}

}  // namespace

DiskConfig parse_disk(const std::string& text) {
  const std::vector<std::string> parts = split(text, ',');
  DiskConfig disk;
  disk.path = parts.front();
  if (disk.path.empty()) {
    fail("--disk {}: needs a path first (PATH[,readonly=on][,snapshot=on][,serial=ID])", text);
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto [part, key, value] = split_part(parts[i]);
    if (key == "readonly" && (value == "on" || value == "off")) {
      disk.read_only = value == "on";
    } else if (key == "snapshot" && value == "off") {
      disk.snapshot = DiskConfig::Snapshot::kOff;
    } else if (key == "snapshot" && value == "on") {
      disk.snapshot = DiskConfig::Snapshot::kFile;
    } else if (key == "snapshot" && value == "mem") {
      disk.snapshot = DiskConfig::Snapshot::kMemory;
    } else if (key == "serial" && value) {
      disk.serial = *value;
    } else if (key == "io" && value == "auto") {
      disk.io_engine = DiskConfig::IoEngine::kAuto;
    } else if (key == "io" && value == "io_uring") {
      disk.io_engine = DiskConfig::IoEngine::kIoUring;
    } else if (key == "io" && value == "threads") {
      disk.io_engine = DiskConfig::IoEngine::kThreadPool;
    } else if (!parse_rate_limit_part("disk", text, {part, key, value}, "", disk.rate_limit)) {
      fail(
          "--disk {}: unknown option '{}' (use readonly=on|off, snapshot=on|off|mem, serial=ID, "
          "io=auto|io_uring|threads, {})",
          text, part, rate_limit_keys(""));
    }
  }
  return disk;
}

NetConfig parse_net(const std::string& text) {
  NetConfig net;
  for (const std::string& piece : split(text, ',')) {
    const auto [part, key, value] = split_part(piece);
    if (key == "tap" && value && !value->empty()) {
      net.tap = *value;
    } else if (key == "mac" && value) {
      net.mac = parse_mac(*value);
      if (!net.mac) fail("--net {}: mac={} is not a MAC address (XX:XX:XX:XX:XX:XX)", text, *value);
    } else if (!parse_rate_limit_part("net", text, {part, key, value}, "rx_", net.rx_rate_limit) &&
               !parse_rate_limit_part("net", text, {part, key, value}, "tx_", net.tx_rate_limit)) {
      fail("--net {}: unknown option '{}' (use tap=NAME, mac=XX:XX:XX:XX:XX:XX, {}, {})", text,
           part, rate_limit_keys("rx_"), rate_limit_keys("tx_"));
    }
  }
  if (net.tap.empty()) fail("--net {}: needs tap=NAME", text);
  return net;
}

VsockConfig parse_vsock(const std::string& text) {
  VsockConfig vsock;
  bool have_cid = false;
  for (const std::string& piece : split(text, ',')) {
    const auto [part, key, value] = split_part(piece);
    if (key == "cid" && value) {
      const auto cid = parse_number<uint32_t>(*value);
      if (!cid) fail("--vsock {}: cid={} is not a number", text, *value);
      vsock.guest_cid = *cid;
      have_cid = true;
    } else if (key == "socket" && value && !value->empty()) {
      vsock.uds_path = *value;
    } else {
      fail("--vsock {}: unknown option '{}' (use cid=N,socket=PATH)", text, part);
    }
  }
  if (!have_cid || vsock.uds_path.empty()) fail("--vsock {}: needs cid=N,socket=PATH", text);
  return vsock;
}

ShareConfig parse_share(const std::string& text) {
  const std::vector<std::string> parts = split(text, ',');
  ShareConfig share;
  size_t first_option = 1;
  if (parts.front().find('=') == std::string::npos) {
    const size_t colon = parts.front().rfind(':');
    if (colon == std::string::npos || colon == 0) {
      fail("--share {}: use HOST_DIR:TAG[,readonly=on] or socket=PATH,tag=TAG", text);
    }
    share.host_dir = parts.front().substr(0, colon);
    share.tag = parts.front().substr(colon + 1);
  } else {
    first_option = 0;
  }
  for (size_t i = first_option; i < parts.size(); ++i) {
    const auto [part, key, value] = split_part(parts[i]);
    if (key == "readonly" && (value == "on" || value == "off") && !share.host_dir.empty()) {
      share.read_only = value == "on";
    } else if (key == "socket" && value && !value->empty() && share.host_dir.empty()) {
      share.socket_path = *value;
    } else if (key == "tag" && value && share.host_dir.empty()) {
      share.tag = *value;
    } else {
      fail(
          "--share {}: unknown option '{}' (use HOST_DIR:TAG[,readonly=on] or "
          "socket=PATH,tag=TAG)",
          text, part);
    }
  }
  if (share.host_dir.empty() && share.socket_path.empty()) {
    fail("--share {}: needs HOST_DIR:TAG or socket=PATH,tag=TAG", text);
  }
  return share;
}

VhostUserConfig parse_vhost_user(const std::string& text) {
  const std::vector<std::string> parts = split(text, ',');
  VhostUserConfig device;
  if (parts.front() == "fs") {
    device.type = VhostUserConfig::Type::kFs;
  } else if (parts.front() == "blk") {
    device.type = VhostUserConfig::Type::kBlock;
  } else {
    fail("--vhost-user {}: the type comes first: fs or blk", text);
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto [part, key, value] = split_part(parts[i]);
    if (key == "socket" && value && !value->empty()) {
      device.socket_path = *value;
    } else if (key == "tag" && value && device.type == VhostUserConfig::Type::kFs) {
      device.tag = *value;
    } else {
      fail("--vhost-user {}: unknown option '{}' (use socket=PATH, and tag=TAG for fs)", text,
           part);
    }
  }
  if (device.socket_path.empty()) fail("--vhost-user {}: needs socket=PATH", text);
  if (device.type == VhostUserConfig::Type::kFs && device.tag.empty()) {
    fail("--vhost-user {}: an fs device needs tag=TAG (what the guest mounts)", text);
  }
  return device;
}

std::optional<SerialConfig> parse_serial(const std::string& text) {
  SerialConfig serial;
  if (text == "stdio") {
    serial.mode = SerialConfig::Mode::kStdio;
  } else if (text == "none") {
    serial.mode = SerialConfig::Mode::kNone;
  } else if (text.rfind("file:", 0) == 0 && text.size() > 5) {
    serial.mode = SerialConfig::Mode::kFile;
    serial.path = text.substr(5);
  } else {
    return std::nullopt;
  }
  return serial;
}

namespace {

// A positive whole number (uid=, pids=, ...) of a --jail value.
uint64_t jail_number(const std::string& text, const std::string& key, const std::string& value,
                     uint64_t max) {
  const auto number = parse_number<uint64_t>(value);
  if (!number || *number == 0 || *number > max) {
    fail("--jail {}: {}={} is not a number from 1 to {}", text, key, value, max);
  }
  return *number;
}

uint64_t jail_size(const std::string& text, const std::string& key, const std::string& value) {
  const auto bytes = parse_size(value);
  if (!bytes || *bytes == 0) fail("--jail {}: {}={} is not a size (512M, 2G)", text, key, value);
  return *bytes;
}

// cpus=1.5: a CPU and a half's time per period, as cpu.max's quota in microseconds.
uint64_t jail_cpu_quota(const std::string& text, const std::string& value) {
  double cpus = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), cpus);
  const double quota = cpus * static_cast<double>(security::kCpuPeriodUs);
  // cpu.max takes at least 1 ms per period.
  if (error != std::errc() || end != value.data() + value.size() || !(quota >= 1000) ||
      cpus > kMaxCpus) {
    fail("--jail {}: cpus={} is not a number of CPUs from 0.01 to {}", text, value, kMaxCpus);
  }
  return static_cast<uint64_t>(quota);
}

// A cgroup's name: one path component that cgroupfs takes.
bool valid_cgroup_name(const std::string& name) {
  return !name.empty() && name.size() <= 64 && name.front() != '.' &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' ||
                  c == '.';
         });
}

}  // namespace

security::JailConfig parse_jail(const std::string& text, const std::string& cwd) {
  constexpr const char* kUsage =
      "DIR,uid=N,gid=N[,cgroup=NAME][,memory=SIZE][,cpus=N][,pids=N][,nofile=N][,fsize=SIZE]";
  const std::vector<std::string> parts = split(text, ',');
  security::JailConfig jail;
  if (parts.front().empty()) fail("--jail {}: needs a directory first ({})", text, kUsage);
  jail.dir = absolute_path(parts.front(), cwd);
  while (jail.dir.size() > 1 && jail.dir.back() == '/') jail.dir.pop_back();
  if (jail.dir == "/") fail("--jail {}: the jail's directory can't be /", text);
  constexpr uint64_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "unchanged"
  bool have_uid = false;
  bool have_gid = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const auto [part, key, value] = split_part(parts[i]);
    if (!value) fail("--jail {}: unknown option '{}' ({})", text, part, kUsage);
    if ((key == "uid" || key == "gid") && value == "0") {
      // Root would keep its power over the host's files: the jail is for an unprivileged vmm.
      fail("--jail {}: {}=0 is root's; give an unprivileged one", text, key);
    }
    if (key == "uid") {
      jail.uid = static_cast<uint32_t>(jail_number(text, key, *value, kMaxId));
      have_uid = true;
    } else if (key == "gid") {
      jail.gid = static_cast<uint32_t>(jail_number(text, key, *value, kMaxId));
      have_gid = true;
    } else if (key == "cgroup") {
      jail.cgroup = *value;
    } else if (key == "memory") {
      jail.memory_max = jail_size(text, key, *value);
    } else if (key == "cpus") {
      jail.cpu_quota_us = jail_cpu_quota(text, *value);
    } else if (key == "pids") {
      jail.pids_max = jail_number(text, key, *value, uint64_t{1} << 22);
    } else if (key == "nofile") {
      jail.nofile = jail_number(text, key, *value, uint64_t{1} << 20);
    } else if (key == "fsize") {
      jail.fsize = jail_size(text, key, *value);
    } else {
      fail("--jail {}: unknown option '{}' ({})", text, part, kUsage);
    }
  }
  if (!have_uid || !have_gid) fail("--jail {}: needs uid=N,gid=N (an unprivileged user)", text);
  if (jail.cgroup.empty()) jail.cgroup = jail.dir.substr(jail.dir.rfind('/') + 1);
  if (!valid_cgroup_name(jail.cgroup)) {
    fail("--jail {}: '{}' can't name a cgroup (letters, digits, '-', '_', '.'): give cgroup=NAME",
         text, jail.cgroup);
  }
  return jail;
}

namespace {

// Parses `args` into `app`'s options; false with `result` set to what to print and exit with
// (--help, or a usage error naming `command`'s help).
bool parse_app(CLI::App& app, const std::vector<std::string>& args, const std::string& command,
               ParseResult& result) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
    return true;
  } catch (const CLI::CallForHelp&) {
    result.output = app.help();
  } catch (const CLI::ParseError& e) {
    result.exit_status = kExitStatusUsage;
    // "vmm snapshot" says "snapshot: ..." first.
    const size_t space = command.find(' ');
    result.error =
        space == std::string::npos
            ? fmt::format("{} (see vmm --help)", e.what())
            : fmt::format("{}: {} (see {} --help)", command.substr(space + 1), e.what(), command);
  }
  return false;
}

// `vmm snapshot --api-socket PATH [--paused] DIR`.
ParseResult parse_snapshot_command(const std::vector<std::string>& args) {
  SnapshotRequest request;
  CLI::App app("vmm snapshot: asks a running vmm (its --api-socket) to write a snapshot to DIR.\n",
               "vmm snapshot");
  app.add_option("--api-socket", request.api_socket, "The running vmm's control socket")
      ->type_name("PATH")
      ->required();
  app.add_flag("--paused", request.stay_paused, "Leave the guest paused afterwards");
  app.add_option("directory", request.directory, "Where to write it (created)")
      ->type_name("DIR")
      ->required();
  ParseResult result;
  if (!parse_app(app, {args.begin() + 1, args.end()}, "vmm snapshot", result)) return result;
  Options options;
  options.snapshot = std::move(request);
  result.options = std::move(options);
  return result;
}

}  // namespace

namespace {

// What `vmm` and `vmm run` both take, as the command line spells it.
struct MachineArgs {
  std::string memory{};
  std::string serial{};
  std::vector<std::string> disks{};
  std::vector<std::string> nets{};
  std::vector<std::string> shares{};
  std::vector<std::string> vhost_user{};
  std::string vsock{};
  std::string seccomp = "on";
  std::string cmdline{};
  std::string modules{};
  int verbosity = 0;
  CLI::Option* cmdline_option = nullptr;
};

// The options of a machine that boots a kernel; `run` leaves out what a command's machine has
// no use for (disks: its root is the host's; --cmdline: vmm's init needs its words).
void add_machine_options(CLI::App& app, Options& options, MachineArgs& args, bool run) {
  MachineConfig& machine = options.machine;
  app.add_option(
         "-k,--kernel", machine.kernel_path,
         run ? "Linux kernel to boot (default: the running kernel's /boot/vmlinuz-<release>)"
             : "Linux kernel to boot: a bzImage (vmlinuz) or an ELF vmlinux")
      ->type_name("PATH");
  if (!run) {
    app.add_option("-i,--initrd", machine.initrd_path, "Initial ramdisk (initramfs)")
        ->type_name("PATH");
  }
  app.add_option("--append", machine.append,
                 run ? "More kernel command line, after vmm's defaults"
                     : "More kernel command line, after vmm's defaults (see below)")
      ->type_name("TEXT");
  if (!run) {
    args.cmdline_option =
        app.add_option("--cmdline", args.cmdline, "The whole kernel command line: replaces vmm's")
            ->type_name("TEXT");
  }
  app.add_option("--modules", args.modules,
                 run ? "Kernel modules for the built initramfs (default /lib/modules/<release>)"
                     : "Kernel modules for the built initramfs (default /lib/modules/<release>); "
                       "none: no initramfs")
      ->type_name(run ? "DIR" : "DIR|none");
  app.add_option("-c,--cpus", machine.cpus, "Number of vCPUs")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("-m,--memory", args.memory, "Guest RAM, with a unit: 512M, 2G")
      ->type_name("SIZE")
      ->capture_default_str();
  if (!run) {
    app.add_option("-d,--disk", args.disks,
                   "Virtio disk from a raw image; repeat for vdb, ... (see below)")
        ->type_name("PATH[,OPTS]")
        ->take_all()
        ->allow_extra_args(false);
  }
  app.add_option("-n,--net", args.nets,
                 run ? "Virtio NIC on a tap device (see vmm --help); repeat for eth1, ..."
                     : "Virtio NIC on a tap device; repeat for eth1, ... (see below)")
      ->type_name("tap=NAME[,mac=MAC]")
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("--vsock", args.vsock, "Virtio vsock device with its host side on a Unix socket")
      ->type_name("cid=N,socket=PATH");
  app.add_option("--share", args.shares,
                 run ? "Also share a host directory, mounted at the same path in the guest"
                     : "Share a host directory (virtio-fs, through virtiofsd); repeat for more")
      ->type_name("HOST_DIR:TAG[,readonly=on]")
      ->take_all()
      ->allow_extra_args(false);
  if (!run) {
    app.add_option("--vhost-user", args.vhost_user,
                   "A device served by a vhost-user backend you run; repeat for more")
        ->type_name("fs|blk,socket=PATH[,tag=TAG]")
        ->take_all()
        ->allow_extra_args(false);
    app.add_flag("--console", machine.console.enabled,
                 "A virtio-console on this terminal (hvc0: console=hvc0 is added; the serial "
                 "console then defaults to none)");
  }
  app.add_option("--virtiofsd", machine.virtiofsd_path,
                 "The virtiofsd that serves --share directories (default: Debian's)")
      ->type_name("PATH");
  app.add_option("--serial", args.serial,
                 run ? "The kernel's console (ttyS0): none, stdio or file:PATH"
                     : "Guest console: stdio, file:PATH or none")
      ->type_name("MODE")
      ->capture_default_str();
  app.add_option("--timeout", machine.timeout_seconds,
                 run ? "Stop the guest after this many seconds (exit status 125); 0: never"
                     : "Stop the guest after this many seconds (exit status 124); 0: never")
      ->type_name("SECONDS")
      ->capture_default_str();
  app.add_option("--api-socket", machine.api_socket,
                 "Serve the control API (JSON lines: status, pause, resume, stop, snapshot, "
                 "config, metrics, set-rate-limit) on this Unix socket")
      ->type_name("PATH");
  app.add_option("--seccomp", args.seccomp,
                 "Confine vmm's threads to the system calls they need (off: for debugging)")
      ->type_name("on|off")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  if (!run) {
    app.add_flag("--debug-exit", machine.debug_exit,
                 "Test guests: a byte V written to I/O port 0xf4 ends vmm with exit status V (the "
                 "guest then chooses vmm's exit status; trusted guests only)");
  }
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", args.verbosity, "More log output (-v info, -vv debug, -vvv trace)");
}

// Turns `args` into `options`; a usage error's message, or nullopt.
std::optional<std::string> apply_machine_args(const MachineArgs& args, Options& options) {
  MachineConfig& machine = options.machine;
  const auto bytes = parse_size(args.memory);
  if (!bytes) {
    return fmt::format("--memory {}: not a size (use a number with a unit: 512M, 2G)", args.memory);
  }
  machine.memory_bytes = *bytes;
  const auto serial_config = parse_serial(args.serial);
  if (!serial_config) return fmt::format("--serial {}: use stdio, file:PATH or none", args.serial);
  machine.serial = *serial_config;
  machine.seccomp = args.seccomp == "on";
  if (args.cmdline_option != nullptr && args.cmdline_option->count() > 0) {
    if (!machine.append.empty()) {
      return "--append and --cmdline: --cmdline replaces the whole command line, --append's "
             "words included; give one of them";
    }
    machine.cmdline = args.cmdline;
  }
  if (args.modules == "none") {
    machine.build_initramfs = false;
  } else {
    machine.modules_dir = args.modules;
  }
  try {
    for (const std::string& disk : args.disks) machine.disks.push_back(parse_disk(disk));
    for (const std::string& net : args.nets) machine.nets.push_back(parse_net(net));
    if (!args.vsock.empty()) machine.vsock = parse_vsock(args.vsock);
    for (const std::string& share : args.shares) machine.shares.push_back(parse_share(share));
    for (const std::string& device : args.vhost_user) {
      machine.vhost_user.push_back(parse_vhost_user(device));
    }
  } catch (const Error& e) {
    return e.what();
  }
  static constexpr const char* kLevels[] = {"info", "debug", "trace"};
  if (args.verbosity > 0) options.log_level = kLevels[std::min(args.verbosity, 3) - 1];
  return std::nullopt;
}

ParseResult usage_error(std::string message) {
  ParseResult result;
  result.exit_status = kExitStatusUsage;
  result.error = std::move(message);
  return result;
}

// `vmm run [OPTIONS] -- CMD [ARGS...]`.
ParseResult parse_run_command(const std::vector<std::string>& args, const RunContext& context) {
  Options options;
  MachineArgs machine_args{.memory = "1G", .serial = "none"};
  // What follows "--" is the command's, whatever it looks like; CLI11 sees what comes before.
  const auto dashes = std::find(args.begin() + 1, args.end(), "--");
  std::vector<std::string> command(dashes == args.end() ? dashes : dashes + 1, args.end());
  std::vector<std::string> positional;
  CLI::App app(kRunDescription, "vmm run");
  app.footer(kRunFooter);
  app.get_formatter()->column_width(34);
  add_machine_options(app, options, machine_args, true);
  app.add_option("command", positional, "The command and its arguments (after --)")
      ->type_name("-- CMD [ARGS...]");
  ParseResult result;
  if (!parse_app(app, {args.begin() + 1, dashes}, "vmm run", result)) return result;
  if (!positional.empty() && !command.empty()) {
    return usage_error(fmt::format("run: {}: put the whole command after -- (see vmm run --help)",
                                   positional.front()));
  }
  if (command.empty()) command = std::move(positional);
  if (command.empty()) return usage_error("run: needs a command: vmm run -- CMD [ARGS...]");
  if (auto error = apply_machine_args(machine_args, options)) return usage_error(*error);
  MachineConfig& machine = options.machine;
  if (machine.kernel_path.empty()) {
    machine.kernel_path = "/boot/vmlinuz-" + context.kernel_release;
    if (::access(machine.kernel_path.c_str(), R_OK) != 0) {
      return usage_error(fmt::format(
          "run: no --kernel, and the running kernel's {} can't be read: {} (give --kernel)",
          machine.kernel_path, std::strerror(errno)));
    }
  }
  // The user's shares are mounted where they are on the host.
  for (ShareConfig& share : machine.shares) {
    if (share.host_dir.empty()) {
      return usage_error(
          fmt::format("--share socket={}: run mounts a share at its host path; give HOST_DIR:TAG",
                      share.socket_path));
    }
    share.host_dir = absolute_path(share.host_dir, context.cwd);
    share.guest_path = share.host_dir;
  }
  machine.shares.insert(
      machine.shares.begin(),
      {ShareConfig{.host_dir = "/", .tag = kRunRootTag, .read_only = true, .guest_path = "/"},
       ShareConfig{.host_dir = context.cwd, .tag = kRunWorkTag, .guest_path = context.cwd}});
  machine.command = GuestCommand{.argv = command,
                                 .env = guest_environment(context.environment, context.cwd),
                                 .cwd = context.cwd,
                                 .uid = context.uid,
                                 .gid = context.gid,
                                 .groups = context.groups};
  result.options = std::move(options);
  return result;
}

}  // namespace

ParseResult parse_command_line(const std::vector<std::string>& args, const RunContext& context) {
  if (!args.empty() && args.front() == "snapshot") return parse_snapshot_command(args);
  if (!args.empty() && args.front() == "run") return parse_run_command(args, context);
  Options options;
  MachineArgs machine_args{.memory = "512M", .serial = "stdio"};
  std::string restore;
  std::string jail;
  bool version = false;

  CLI::App app(kDescription, "vmm");
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  add_machine_options(app, options, machine_args, false);
  app.add_option("--restore", restore,
                 "Continue the guest of a snapshot (vmm snapshot) instead of booting a kernel")
      ->type_name("DIR");
  app.add_option("--jail", jail,
                 "Run confined: namespaces, DIR as the root, this uid/gid, limits (see below)")
      ->type_name("DIR,uid=N,gid=N[,...]");
  app.add_flag("--version", version, "Print the version and exit");

  ParseResult result;
  if (!parse_app(app, args, "vmm", result)) return result;
  if (version) {
    result.output = fmt::format("vmm {}\n", VMM_VERSION);
    return result;
  }
  if (!restore.empty()) {
    for (const char* name :
         {"--kernel", "--initrd", "--append", "--cmdline", "--modules", "--cpus", "--memory"}) {
      if (app.get_option(name)->count() > 0) {
        return usage_error(
            fmt::format("--restore {}: {} comes from the snapshot; leave it out (see vmm --help)",
                        restore, name));
      }
    }
  } else if (options.machine.kernel_path.empty()) {
    return usage_error("--kernel is required (or --restore DIR; see vmm --help)");
  }
  if (options.machine.console.enabled && app.get_option("--serial")->count() == 0) {
    machine_args.serial = "none";
  }
  if (auto error = apply_machine_args(machine_args, options)) return usage_error(*error);
  if (!restore.empty()) options.restore = restore_config(restore, options.machine);
  if (!jail.empty()) {
    try {
      options.jail = parse_jail(jail, context.cwd);
    } catch (const Error& e) {
      return usage_error(e.what());
    }
  }
  result.options = std::move(options);
  return result;
}

RunContext RunContext::of_this_process() {
  RunContext context;
  utsname name{};
  if (::uname(&name) == 0) context.kernel_release = name.release;
  std::array<char, 4096> cwd{};
  if (::getcwd(cwd.data(), cwd.size()) != nullptr) context.cwd = cwd.data();
  for (char** variable = environ; *variable != nullptr; ++variable) {
    context.environment.emplace_back(*variable);
  }
  context.uid = ::getuid();
  context.gid = ::getgid();
  const int count = ::getgroups(0, nullptr);
  if (count > 0) {
    std::vector<gid_t> groups(static_cast<size_t>(count));
    const int got = ::getgroups(count, groups.data());
    for (int i = 0; i < got; ++i) context.groups.push_back(groups[static_cast<size_t>(i)]);
  }
  return context;
}

}  // namespace vmm::cli
