#include "vmm/machine/host_resources.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iterator>

#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "boot/initramfs/init_program.hpp"
#include "boot/initramfs/initramfs.hpp"
#include "boot/initramfs/root_fs.hpp"
#include "boot/initramfs/run_job.hpp"
#include "boot/kernel_loader.hpp"
#include "boot/kernel_release.hpp"
#include "devices/vhost_user/backend_channel.hpp"
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

// What the init of a command's initramfs does: the shares with a guest path (the root first), then
// the command.
boot::RunJob run_job(const MachineConfig& config) {
  const GuestCommand& command = *config.command;
  boot::RunJob job{.uid = command.uid,
                   .gid = command.gid,
                   .groups = command.groups,
                   .cwd = command.cwd,
                   .mounts = {},
                   .argv = command.argv,
                   .env = command.env};
  for (const ShareConfig& share : config.shares) {
    if (share.guest_path.empty()) continue;
    const boot::RunJob::Mount mount{share.tag, share.guest_path, share.read_only};
    if (share.guest_path == "/") {
      job.mounts.insert(job.mounts.begin(), mount);
    } else {
      job.mounts.push_back(mount);
    }
  }
  return job;
}

std::string virtiofsd_program(const MachineConfig& config, const std::string& option) {
  if (!config.virtiofsd_path.empty()) return config.virtiofsd_path;
  const std::vector<std::string> candidates(std::begin(kVirtiofsdPaths), std::end(kVirtiofsdPaths));
  if (auto found = devices::Virtiofsd::find_program(candidates)) return *found;
  fail(
      "{}: no virtiofsd found ({}; Debian 12 has it in qemu-system-common): install it, or "
      "give --virtiofsd PATH",
      option, fmt::join(candidates, ", "));
}

// Starts a virtiofsd per shared directory and connects to every vhost-user backend, so that a
// missing directory or socket is reported before /dev/kvm is opened.
void open_vhost_user_backends(const MachineConfig& config, HostResources& resources) {
  for (const ShareConfig& share : config.shares) {
    if (share.host_dir.empty()) {
      try {
        resources.vhost_user_sockets.push_back(
            devices::vhost_user::BackendChannel::connect(share.socket_path));
      } catch (const Error& e) {
        fail("--share {}", e.what());
      }
      continue;
    }
    const std::string option = fmt::format("--share {}:{}", share.host_dir, share.tag);
    resources.virtiofsds.push_back(
        devices::Virtiofsd::start({.program = virtiofsd_program(config, option),
                                   .directory = share.host_dir,
                                   .read_only = share.read_only,
                                   .name = option}));
    resources.vhost_user_sockets.push_back(resources.virtiofsds.back().take_socket());
  }
  for (const VhostUserConfig& device : config.vhost_user) {
    try {
      resources.vhost_user_sockets.push_back(
          devices::vhost_user::BackendChannel::connect(device.socket_path));
    } catch (const Error& e) {
      fail("--vhost-user {}", e.what());
    }
  }
}

// The root filesystem's module for the built initramfs: rootfstype='s, else what the superblock
// of the disk root= names says.
std::string root_fs_module(const MachineConfig& config, const HostResources& resources) {
  const std::string& cmdline = resources.cmdline;
  if (const std::string type = cmdline_value(cmdline, "rootfstype"); !type.empty()) {
    return boot::rootfstype_module(type);
  }
  const std::string root = cmdline_value(cmdline, "root");
  constexpr std::string_view kDiskPrefix = "/dev/vd";
  size_t index = config.disks.size();
  if (root.size() == kDiskPrefix.size() + 1 && root.starts_with(kDiskPrefix)) {
    index = static_cast<size_t>(root.back() - 'a');
  }
  if (index >= config.disks.size()) {
    fail(
        "root={}: not one of the disks (/dev/vda, ...); add rootfstype=TYPE to --append so that "
        "vmm knows which filesystem module the initramfs needs",
        root);
  }
  const std::string& path = config.disks[index].path;
  // The disk vmm opened (and locked) already.
  const auto module =
      boot::detect_root_fs_module(resources.disks[index].image_fd(), "--disk " + path);
  if (!module) {
    fail(
        "--disk {}: no ext4, xfs or btrfs filesystem at its start (a partitioned disk?): add "
        "rootfstype=TYPE to --append",
        path);
  }
  return *module;
}

// A stock distribution kernel has virtio and often its root filesystem as modules: with a disk
// and no initrd, vmm builds the initramfs that loads them. A kernel without a release string
// (vmm's test guests) boots the disk directly.
void build_initramfs(const MachineConfig& config, HostResources& resources) {
  const bool wanted = config.build_initramfs && config.initrd_path.empty() &&
                      (!config.disks.empty() || config.command);
  if (!wanted) {
    if (!config.modules_dir.empty()) {
      spdlog::warn(
          "--modules {}: unused (vmm builds an initramfs only for a --disk without an "
          "--initrd)",
          config.modules_dir);
    }
    return;
  }
  const std::optional<std::string> release = boot::kernel_release(resources.kernel);
  if (!release) {
    spdlog::info(
        "{}: no release string (not a distribution kernel): the disk boots without an "
        "initramfs",
        resources.kernel_name);
    return;
  }
  const std::optional<std::string> given =
      config.modules_dir.empty() ? std::nullopt : std::optional(config.modules_dir);
  const boot::InitramfsSpec spec{
      .release = *release,
      .modules = boot::find_modules_dir(given, *release, resources.kernel_name),
      .root_fs_module = config.command ? "" : root_fs_module(config, resources),
      .init_program = boot::init_program(),
      .run_job = config.command ? std::optional(run_job(config)) : std::nullopt};
  const boot::Initramfs initramfs(spec);
  resources.initrd = initramfs.bytes();
  resources.initrd_name = "the initramfs built from " + spec.modules.path;
  std::string names;
  for (const boot::KernelModule& module : initramfs.modules()) names += " " + module.name;
  spdlog::info("initramfs: {} KiB, modules from {}:{}", resources.initrd.size() >> 10,
               spec.modules.path, names.empty() ? " none (all built in)" : names);
}

}  // namespace

HostResources HostResources::open(const MachineConfig& config) {
  std::vector<uint8_t> kernel = read_file(config.kernel_path, "--kernel");
  const std::string kernel_name = "--kernel " + config.kernel_path;
  boot::check_kernel(kernel, kernel_name);
  std::vector<uint8_t> initrd;
  if (!config.initrd_path.empty()) initrd = read_file(config.initrd_path, "--initrd");
  HostResources resources = open_devices(config);
  resources.kernel = std::move(kernel);
  resources.kernel_name = kernel_name;
  if (!config.initrd_path.empty()) {
    resources.initrd = std::move(initrd);
    resources.initrd_name = "--initrd " + config.initrd_path;
  }
  open_vhost_user_backends(config, resources);
  resources.cmdline = compose_cmdline(config);
  spdlog::info("kernel command line: {}", resources.cmdline);
  build_initramfs(config, resources);
  return resources;
}

HostResources HostResources::open_devices(const MachineConfig& config) {
  HostResources resources;
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
  return resources;
}

}  // namespace vmm
