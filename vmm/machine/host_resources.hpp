#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"
#include "devices/backends/disk_image.hpp"
#include "devices/backends/tap.hpp"
#include "devices/backends/virtiofsd.hpp"
#include "vmm/machine_config.hpp"

namespace vmm {

// Everything a machine takes from the host, opened and checked before /dev/kvm is: bad input is
// reported first, and the same way on a host without KVM. The kernel and the initrd are read
// into memory (the initramfs built, when vmm builds one), the disks opened and locked, the taps
// attached, the console file created, the sockets' directories checked.
struct HostResources {
  std::vector<uint8_t> kernel;
  std::string kernel_name;                          // "--kernel PATH"
  std::vector<uint8_t> initrd;                      // empty: none
  std::string initrd_name;                          // "--initrd PATH", or what built it
  std::string cmdline;                              // the final kernel command line
  std::deque<devices::DiskImage> disks;             // config.disks' order
  std::vector<std::unique_ptr<devices::Tap>> taps;  // config.nets' order
  UniqueFd serial_file;                             // SerialConfig::Mode::kFile
  // The virtiofsds vmm started for the shares with a host_dir; stopped when this goes, after the
  // devices they serve.
  std::vector<devices::Virtiofsd> virtiofsds;
  // A connected vhost-user socket per share (config.shares' order), then per
  // config.vhost_user device: taken by the devices.
  std::vector<UniqueFd> vhost_user_sockets;

  // Throws vmm::Error naming the option and the file ("--disk /x.img: No such file or
  // directory"). `config` must have passed validate_config().
  static HostResources open(const MachineConfig& config);
  // What a restored machine takes: the disks, taps, console file and sockets' folders, but no
  // kernel or initrd (the guest's RAM holds them), and no vhost-user backends (a machine with
  // them can't be snapshotted).
  static HostResources open_devices(const MachineConfig& config);
};

}  // namespace vmm
