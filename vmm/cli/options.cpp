#include "vmm/cli/options.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <charconv>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "base/util/size.hpp"
#include "vmm/machine.hpp"

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
The guest sees size/512 sectors (a trailing partial sector is not visible). An image in use by
another writer (vmm, QEMU) is refused: vmm takes an OFD lock on it.

NICs are virtio-net devices on virtio-mmio (modules virtio_mmio and virtio_net in the guest),
each over a tap device: --net tap=NAME[,mac=XX:XX:XX:XX:XX:XX]. vmm attaches to an existing tap
(create one for your user: ip tuntap add tap0 mode tap user $USER; ip link set tap0 up), or creates
it when it runs with CAP_NET_ADMIN. Without mac=, the guest gets a stable locally administered
address derived from the tap's name. scripts/vmm-net.sh sets up a tap on a bridge, with NAT.

--vsock cid=N,socket=PATH gives the guest a virtio-vsock device (module vmw_vsock_virtio_transport)
with context ID N (3 or more). Host programs reach guest port P by connecting to the Unix socket
PATH and sending "CONNECT P\n" (answered "OK <host port>\n", then the stream is the connection);
a guest connecting to host CID 2, port P reaches the Unix socket PATH_P, which a host program
listens on.

Least privilege: once the guest starts, each vmm thread (vCPUs, event loop, control socket, disk
workers, the main thread) runs under a seccomp filter that allows only the system calls it needs.
A forbidden call is reported on stderr ("vmm: seccomp: <thread> thread made a forbidden system
call: <name>") and kills vmm with SIGSYS; --seccomp off runs without filters, for debugging.

The guest console is COM1 (ttyS0): on this terminal by default, in raw mode while the guest
runs (Ctrl-C ends vmm). Log messages go to stderr.

--api-socket PATH serves a control API on a Unix socket: one JSON request per line, one JSON
response per line. {"command":"status"} answers {"ok":true,"state":"running","uptime_ms":N};
"pause", "resume" and "stop" change the state; "config" shows the configuration;
{"command":"snapshot","path":DIR} writes a snapshot (below). Try:
  echo '{"command":"status"}' | socat - UNIX-CONNECT:PATH

Snapshots: vmm snapshot --api-socket PATH [--paused] DIR asks the vmm serving PATH to write its
guest to DIR (created): manifest.json, the RAM as a sparse file, every vCPU's and device's state.
The guest pauses for it (after its disk requests in flight complete) and goes on afterwards, or
stays paused with --paused. vmm --restore DIR continues it in a new process, RAM mapped
copy-on-write from DIR/memory (many restores share one page cache). The disks must be as they
were at the snapshot (snapshot with --paused and stop that vmm, or give the disks snapshot=on).
--restore takes --disk, --net, --vsock (each list as long as the snapshot's), --serial,
--api-socket, --timeout and --seccomp; the CPUs, memory and kernel come from the snapshot, and a
snapshot restores only into the same vmm version on the same CPU model.
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
  V    a test guest wrote V to the debug-exit port (I/O port 0xf4)
)";

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
    } else {
      fail(
          "--disk {}: unknown option '{}' (use readonly=on|off, snapshot=on|off|mem, serial=ID, "
          "io=auto|io_uring|threads)",
          text, part);
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
    } else {
      fail("--net {}: unknown option '{}' (use tap=NAME, mac=XX:XX:XX:XX:XX:XX)", text, part);
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
      uint32_t cid = 0;
      const auto [end, error] = std::from_chars(value->data(), value->data() + value->size(), cid);
      if (value->empty() || error != std::errc() || end != value->data() + value->size()) {
        fail("--vsock {}: cid={} is not a number", text, *value);
      }
      vsock.guest_cid = cid;
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
    result.error = command == "vmm"
                       ? fmt::format("{} (see vmm --help)", e.what())
                       : fmt::format("snapshot: {} (see {} --help)", e.what(), command);
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

ParseResult parse_command_line(const std::vector<std::string>& args) {
  if (!args.empty() && args.front() == "snapshot") return parse_snapshot_command(args);
  Options options;
  std::string restore;
  std::string memory = "512M";
  std::string serial = "stdio";
  std::vector<std::string> disks;
  std::vector<std::string> nets;
  std::string vsock;
  std::string seccomp = "on";
  std::string cmdline;
  std::string modules;
  int verbosity = 0;
  bool version = false;

  CLI::App app(kDescription, "vmm");
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  app.add_option("-k,--kernel", options.machine.kernel_path,
                 "Linux kernel to boot: a bzImage (vmlinuz) or an ELF vmlinux")
      ->type_name("PATH");
  app.add_option("-i,--initrd", options.machine.initrd_path, "Initial ramdisk (initramfs)")
      ->type_name("PATH");
  app.add_option("--append", options.machine.append,
                 "More kernel command line, after vmm's defaults (see below)")
      ->type_name("TEXT");
  auto* cmdline_option =
      app.add_option("--cmdline", cmdline, "The whole kernel command line: replaces vmm's")
          ->type_name("TEXT");
  app.add_option("--modules", modules,
                 "Kernel modules for the built initramfs (default /lib/modules/<release>); none: "
                 "no initramfs")
      ->type_name("DIR|none");
  app.add_option("-c,--cpus", options.machine.cpus, "Number of vCPUs")
      ->type_name("N")
      ->capture_default_str();
  app.add_option("-m,--memory", memory, "Guest RAM, with a unit: 512M, 2G")
      ->type_name("SIZE")
      ->capture_default_str();
  app.add_option("-d,--disk", disks,
                 "Virtio disk from a raw image; repeat for vdb, ... (see below)")
      ->type_name("PATH[,OPTS]")
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("-n,--net", nets, "Virtio NIC on a tap device; repeat for eth1, ... (see below)")
      ->type_name("tap=NAME[,mac=MAC]")
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("--vsock", vsock, "Virtio vsock device with its host side on a Unix socket")
      ->type_name("cid=N,socket=PATH");
  app.add_option("--serial", serial, "Guest console: stdio, file:PATH or none")
      ->type_name("MODE")
      ->capture_default_str();
  app.add_option("--timeout", options.machine.timeout_seconds,
                 "Stop the guest after this many seconds (exit status 124); 0: never")
      ->type_name("SECONDS")
      ->capture_default_str();
  app.add_option("--api-socket", options.machine.api_socket,
                 "Serve the control API (JSON lines: status, pause, resume, stop, snapshot, "
                 "config) on this Unix socket")
      ->type_name("PATH");
  app.add_option("--restore", restore,
                 "Continue the guest of a snapshot (vmm snapshot) instead of booting a kernel")
      ->type_name("DIR");
  app.add_option("--seccomp", seccomp,
                 "Confine vmm's threads to the system calls they need (off: for debugging)")
      ->type_name("on|off")
      ->check(CLI::IsMember({"on", "off"}))
      ->capture_default_str();
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error or off")
      ->type_name("LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->capture_default_str();
  app.add_flag("-v,--verbose", verbosity, "More log output (-v info, -vv debug, -vvv trace)");
  app.add_flag("--version", version, "Print the version and exit");

  ParseResult result;
  if (!parse_app(app, args, "vmm", result)) return result;
  if (version) {
    result.output = fmt::format("vmm {}\n", VMM_VERSION);
    return result;
  }
  auto usage_error = [&result](std::string message) {
    result.exit_status = kExitStatusUsage;
    result.error = std::move(message);
    return result;
  };
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
  const auto bytes = parse_size(memory);
  if (!bytes) {
    return usage_error(
        fmt::format("--memory {}: not a size (use a number with a unit: 512M, 2G)", memory));
  }
  options.machine.memory_bytes = *bytes;
  const auto serial_config = parse_serial(serial);
  if (!serial_config) {
    return usage_error(fmt::format("--serial {}: use stdio, file:PATH or none", serial));
  }
  options.machine.serial = *serial_config;
  options.machine.seccomp = seccomp == "on";
  if (cmdline_option->count() > 0) {
    if (!options.machine.append.empty()) {
      return usage_error(
          "--append and --cmdline: --cmdline replaces the whole command line, --append's words "
          "included; give one of them");
    }
    options.machine.cmdline = cmdline;
  }
  if (modules == "none") {
    options.machine.build_initramfs = false;
  } else {
    options.machine.modules_dir = modules;
  }
  try {
    for (const std::string& disk : disks) options.machine.disks.push_back(parse_disk(disk));
    for (const std::string& net : nets) options.machine.nets.push_back(parse_net(net));
    if (!vsock.empty()) options.machine.vsock = parse_vsock(vsock);
  } catch (const Error& e) {
    return usage_error(e.what());
  }
  static constexpr const char* kLevels[] = {"info", "debug", "trace"};
  if (verbosity > 0) options.log_level = kLevels[std::min(verbosity, 3) - 1];
  if (!restore.empty()) options.restore = restore_config(restore, options.machine);
  result.options = std::move(options);
  return result;
}

}  // namespace vmm::cli
