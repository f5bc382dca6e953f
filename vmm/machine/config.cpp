#include <sys/un.h>
#include <unistd.h>

#include <set>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "vmm/machine_config.hpp"

namespace vmm {

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
  // sun_path holds the path and its terminating NUL.
  constexpr size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
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
  if (config.disks.size() + config.nets.size() > kMaxVirtioDevices) {
    fail("--disk/--net: {} devices, at most {} virtio devices fit the interrupt lines",
         config.disks.size() + config.nets.size(), kMaxVirtioDevices);
  }
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
  restore.serial = config.serial;
  restore.api_socket = config.api_socket;
  restore.timeout_seconds = config.timeout_seconds;
  restore.seccomp = config.seccomp;
  restore.kvm_device = config.kvm_device;
  return restore;
}

}  // namespace vmm
