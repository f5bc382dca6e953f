#include "vmm/machine/host_resources.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "boot/kernel_loader.hpp"
#include "vmm/machine/kernel_cmdline.hpp"

namespace vmm {

namespace {

devices::DiskImage::Overlay to_overlay(DiskConfig::Snapshot snapshot) {
  switch (snapshot) {
    case DiskConfig::Snapshot::kFile: return devices::DiskImage::Overlay::kTempFile;
    case DiskConfig::Snapshot::kMemory: return devices::DiskImage::Overlay::kMemory;
    case DiskConfig::Snapshot::kOff: break;
  }
  return devices::DiskImage::Overlay::kNone;
}

// vmm creates the socket itself once the machine is assembled; what can fail now is the
// directory it goes in.
void check_socket_directory(const std::string& option, const std::string& socket_path) {
  const std::filesystem::path parent = std::filesystem::path(socket_path).parent_path();
  const std::filesystem::path directory = parent.empty() ? std::filesystem::path(".") : parent;
  struct stat st {};
  const std::string what = fmt::format("{}: {}", option, directory.string());
  if (::stat(directory.c_str(), &st) != 0) throw_errno(what);
  if (!S_ISDIR(st.st_mode)) fail("{}: not a directory", what);
  if (::access(directory.c_str(), W_OK | X_OK) != 0) throw_errno(what);
}

}  // namespace

HostResources HostResources::open(const MachineConfig& config) {
  HostResources resources;
  resources.kernel_name = "--kernel " + config.kernel_path;
  resources.kernel = read_file(config.kernel_path, "--kernel");
  boot::check_kernel(resources.kernel, resources.kernel_name);
  if (!config.initrd_path.empty()) {
    resources.initrd_name = "--initrd " + config.initrd_path;
    resources.initrd = read_file(config.initrd_path, "--initrd");
  }
  for (const DiskConfig& disk : config.disks) {
    try {
      resources.disks.push_back(
          devices::DiskImage::open(disk.path, disk.read_only, to_overlay(disk.snapshot)));
    } catch (const Error& e) {
      fail("--disk {}", e.what());
    }
  }
  for (const NetConfig& net : config.nets) {
    try {
      resources.taps.push_back(std::make_unique<devices::Tap>(devices::Tap::open(net.tap)));
    } catch (const Error& e) {
      fail("--net {}", e.what());
    }
  }
  if (config.vsock) {
    check_socket_directory(
        fmt::format("--vsock cid={},socket={}", config.vsock->guest_cid, config.vsock->uds_path),
        config.vsock->uds_path);
  }
  if (!config.api_socket.empty()) {
    check_socket_directory("--api-socket " + config.api_socket, config.api_socket);
  }
  if (config.serial.mode == SerialConfig::Mode::kFile) {
    resources.serial_file.reset(::open(config.serial.path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
    if (!resources.serial_file) throw_errno("--serial file:" + config.serial.path);
  }
  resources.cmdline = compose_cmdline(config);
  spdlog::info("kernel command line: {}", resources.cmdline);
  return resources;
}

}  // namespace vmm
