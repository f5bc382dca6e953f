#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "vmm/machine/restore_choices.hpp"
#include "vmm/machine_config.hpp"

namespace vmm {

namespace {

// sun_path holds the path and its terminating NUL.
constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;

void check_tag(const std::string& option, const std::string& tag, std::set<std::string>& tags) {
  if (tag.empty() || tag.size() > kMaxShareTagBytes) {
    fail("{}: tag '{}' must be 1 to {} bytes", option, tag, kMaxShareTagBytes);
  }
  if (!tags.insert(tag).second) fail("{}: tag '{}' is given twice", option, tag);
}

void check_socket_path(const std::string& option, const std::string& path) {
  if (path.empty()) fail("{}: needs socket=PATH", option);
  if (path.size() > kMaxSocketPath) {
    fail("{}: the socket path is longer than {} bytes", option, kMaxSocketPath);
  }
}

void validate_shares(const MachineConfig& config) {
  std::set<std::string> tags;
  for (const ShareConfig& share : config.shares) {
    const std::string option =
        "--share " + (share.host_dir.empty() ? "socket=" + share.socket_path : share.host_dir);
    if (share.host_dir.empty() == share.socket_path.empty()) {
      fail("{}: give a host directory or a backend's socket, not both", option);
    }
    if (!share.socket_path.empty()) check_socket_path(option, share.socket_path);
    if (share.read_only && share.host_dir.empty()) {
      fail("{}: readonly=on is for a directory vmm shares (a backend of your own enforces it)",
           option);
    }
    check_tag(option, share.tag, tags);
    if (!share.guest_path.empty() && share.guest_path.front() != '/') {
      fail("{}: the guest path {} is not absolute", option, share.guest_path);
    }
  }
  for (const VhostUserConfig& device : config.vhost_user) {
    const std::string option = "--vhost-user socket=" + device.socket_path;
    check_socket_path(option, device.socket_path);
    if (device.type == VhostUserConfig::Type::kFs) {
      check_tag(option, device.tag, tags);
    } else if (!device.tag.empty()) {
      fail("{}: tag= is for fs devices", option);
    }
  }
  if (config.console.enabled && config.command) {
    fail("--console: a command's console is its own (vmm run)");
  }
  if (config.console.enabled && config.serial.mode == SerialConfig::Mode::kStdio) {
    fail(
        "--console and --serial stdio: both would read this terminal (give --serial none or "
        "file:PATH)");
  }
  if (!config.command) return;
  const GuestCommand& command = *config.command;
  if (command.argv.empty() || command.argv.front().empty()) fail("run: needs a command");
  if (command.cwd.empty() || command.cwd.front() != '/') {
    fail("run: the working directory {} is not absolute", command.cwd);
  }
  const bool has_root =
      std::any_of(config.shares.begin(), config.shares.end(),
                  [](const ShareConfig& share) { return share.guest_path == "/"; });
  if (!has_root) fail("run: needs a share mounted at / (the guest's root)");
  if (!config.disks.empty()) fail("run: the guest's root is a share; --disk is not for run");
}

}  // namespace

size_t virtio_device_count(const MachineConfig& config) {
  return config.disks.size() + config.nets.size() + (config.vsock ? 1 : 0) + config.shares.size() +
         config.vhost_user.size() + (config.console.enabled || config.command ? 1 : 0);
}

void validate_config(const MachineConfig& config) {
  if (config.kernel_path.empty()) fail("--kernel is required");
  if (config.cpus < 1 || config.cpus > kMaxCpus) {
    fail("--cpus {}: must be between 1 and {}", config.cpus, kMaxCpus);
  }
  if (config.memory_bytes < kMinMemoryBytes) {
    fail("--memory {} MiB: too little memory (at least {} MiB)", config.memory_bytes >> 20,
         kMinMemoryBytes >> 20);
  }
  if (config.memory_bytes > kMaxMemoryBytes) {
    fail("--memory {} GiB: too much memory (at most {} GiB)", config.memory_bytes >> 30,
         kMaxMemoryBytes >> 30);
  }
  if (config.memory_bytes % 4096 != 0) {
    fail("--memory {} bytes: must be a multiple of 4 KiB", config.memory_bytes);
  }
  if (config.cmdline && config.cmdline->find('\0') != std::string::npos) {
    fail("--cmdline contains a NUL byte");
  }
  if (config.append.find('\0') != std::string::npos) fail("--append contains a NUL byte");
  if (config.serial.mode == SerialConfig::Mode::kFile && config.serial.path.empty()) {
    fail("--serial file: needs a path (file:PATH)");
  }
  if (config.serial.mode == SerialConfig::Mode::kFd && config.serial.fd < 0) {
    fail("serial: fd {} is not a file descriptor", config.serial.fd);
  }
  if (config.serial.mode == SerialConfig::Mode::kCallback && !config.serial.callback) {
    fail("serial: the callback mode needs a callback");
  }
  if (config.api_socket.size() > kMaxSocketPath) {
    fail("--api-socket {}: longer than {} bytes", config.api_socket, kMaxSocketPath);
  }
  if (config.vsock) {
    const VsockConfig& vsock = *config.vsock;
    if (vsock.guest_cid < 3 || vsock.guest_cid > 0xfffffffe) {
      fail("--vsock cid={}: must be between 3 and 4294967294", vsock.guest_cid);
    }
    if (vsock.uds_path.empty()) fail("--vsock: needs a Unix socket path");
    if (vsock.uds_path.size() > kMaxSocketPath) {
      fail("--vsock {}: the socket path is longer than {} bytes", vsock.uds_path, kMaxSocketPath);
    }
  }
  const size_t virtio_devices = virtio_device_count(config);
  if (virtio_devices > kMaxVirtioDevices) {
    fail(
        "--disk/--net/--vsock/--share/--vhost-user/--console: {} devices, at most {} virtio "
        "devices fit the interrupt lines",
        virtio_devices, kMaxVirtioDevices);
  }
  validate_shares(config);
  for (const DiskConfig& disk : config.disks) {
    if (disk.path.empty()) fail("--disk: needs a path");
    if (disk.serial.size() > kMaxDiskSerialBytes) {
      fail("--disk {}: serial={} is longer than {} bytes", disk.path, disk.serial,
           kMaxDiskSerialBytes);
    }
  }
  std::set<std::string> taps;
  for (const NetConfig& net : config.nets) {
    if (net.tap.empty()) fail("--net: needs tap=NAME");
    if (!taps.insert(net.tap).second) fail("--net tap={}: given twice", net.tap);
    if (net.mac && ((*net.mac)[0] & 1) != 0) {
      fail("--net tap={}: mac={} is a multicast address", net.tap, format_mac(*net.mac));
    }
  }
}

RestoreConfig restore_config(const std::string& snapshot_dir, const MachineConfig& config) {
  RestoreConfig restore;
  restore.snapshot_dir = snapshot_dir;
  if (!config.disks.empty()) restore.disks = config.disks;
  if (!config.nets.empty()) restore.nets = config.nets;
  restore.vsock = config.vsock;
  copy_restore_choices(config, restore);
  return restore;
}

}  // namespace vmm
