#include <gtest/gtest.h>

#include "base/util/error.hpp"
#include "vmm/machine_config.hpp"

namespace vmm {
namespace {

MachineConfig good() {
  MachineConfig config;
  config.kernel_path = "/k";
  return config;
}

void expect_refused(const MachineConfig& config, const std::string& fragment) {
  try {
    validate_config(config);
    FAIL() << "accepted a config that should be refused: " << fragment;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ValidateConfig, AcceptsDefaults) {
  EXPECT_NO_THROW(validate_config(good()));
}

TEST(ValidateConfig, Disks) {
  auto c = good();
  c.disks.push_back({"/a.img", false, std::string(kMaxDiskSerialBytes, 'x')});
  EXPECT_NO_THROW(validate_config(c));
  c.disks[0].serial.push_back('y');
  expect_refused(c, "--disk /a.img: serial=");
  c = good();
  c.disks.push_back({"", false, ""});
  expect_refused(c, "--disk: needs a path");
  c = good();
  c.disks.assign(kMaxVirtioDevices + 1, DiskConfig{"/a.img", true, ""});
  expect_refused(c, "at most 18 virtio devices");
}

TEST(ValidateConfig, Nics) {
  auto c = good();
  c.nets.push_back({"tap0", std::nullopt});
  c.nets.push_back({"tap1", std::array<uint8_t, 6>{0x02, 0, 0, 0, 0, 1}});
  EXPECT_NO_THROW(validate_config(c));
  c.nets.push_back({"tap0", std::nullopt});
  expect_refused(c, "--net tap=tap0: given twice");
  c = good();
  c.nets.push_back({"tap0", std::array<uint8_t, 6>{0x01, 0, 0x5e, 0, 0, 1}});
  expect_refused(c, "mac=01:00:5e:00:00:01 is a multicast address");
  c = good();
  c.disks.assign(kMaxVirtioDevices, DiskConfig{"/a.img", true, ""});
  c.nets.push_back({"tap0", std::nullopt});
  expect_refused(c, "at most 18 virtio devices");
}

TEST(ValidateConfig, RefusesEachBadField) {
  auto c = good();
  c.kernel_path.clear();
  expect_refused(c, "--kernel is required");
  c = good();
  c.cpus = 0;
  expect_refused(c, "--cpus 0");
  c.cpus = kMaxCpus + 1;
  expect_refused(c, "--cpus");
  c = good();
  c.memory_bytes = 1 << 20;
  expect_refused(c, "too little memory");
  c.memory_bytes = kMaxMemoryBytes * 2;
  expect_refused(c, "too much memory");
  c.memory_bytes = (64 << 20) + 1;
  expect_refused(c, "multiple of 4 KiB");
  c = good();
  c.serial.mode = SerialConfig::Mode::kFile;
  expect_refused(c, "--serial file");
}

TEST(ValidateConfig, SerialFdAndCallback) {
  auto c = good();
  c.serial.mode = SerialConfig::Mode::kFd;
  c.serial.fd = 1;
  EXPECT_NO_THROW(validate_config(c));
  c.serial.fd = -1;
  expect_refused(c, "serial: fd -1 is not a file descriptor");
  c = good();
  c.serial.mode = SerialConfig::Mode::kCallback;
  expect_refused(c, "serial: the callback mode needs a callback");
  c.serial.callback = [](std::span<const uint8_t>) {};
  EXPECT_NO_THROW(validate_config(c));
}

TEST(ValidateConfig, ApiSocketFitsAUnixSocketAddress) {
  auto c = good();
  c.api_socket = "/run/" + std::string(102, 'a');  // 107 bytes: the most sun_path holds
  EXPECT_NO_THROW(validate_config(c));
  c.api_socket.push_back('a');
  expect_refused(c, "--api-socket /run/aaa");
  expect_refused(c, "longer than 107 bytes");
}

TEST(ValidateConfig, Vsock) {
  auto c = good();
  c.vsock = VsockConfig{3, "/run/v.sock"};
  EXPECT_NO_THROW(validate_config(c));
  c.vsock->guest_cid = 0xfffffffe;
  EXPECT_NO_THROW(validate_config(c));
  for (uint32_t reserved : {0u, 1u, 2u, 0xffffffffu}) {
    c.vsock->guest_cid = reserved;
    expect_refused(c, fmt::format("--vsock cid={}: must be between 3 and 4294967294", reserved));
  }
  c.vsock = VsockConfig{3, ""};
  expect_refused(c, "--vsock: needs a Unix socket path");
  c.vsock->uds_path = "/" + std::string(107, 'v');
  expect_refused(c, "--vsock /vvv");
  expect_refused(c, "longer than 107 bytes");
  c.vsock->uds_path.pop_back();
  EXPECT_NO_THROW(validate_config(c));
}

}  // namespace
}  // namespace vmm

namespace vmm {
namespace {

TEST(ValidateConfig, Shares) {
  auto c = good();
  c.shares.push_back({.host_dir = "/srv", .tag = "a"});
  c.shares.push_back({.socket_path = "/run/fs.sock", .tag = "b"});
  c.vhost_user.push_back({.type = VhostUserConfig::Type::kBlock, .socket_path = "/run/b.sock"});
  EXPECT_NO_THROW(validate_config(c));
  EXPECT_EQ(virtio_device_count(c), 3u);

  auto twice = c;
  twice.shares[1].tag = "a";
  expect_refused(twice, "tag 'a' is given twice");
  auto long_tag = good();
  long_tag.shares.push_back({.host_dir = "/srv", .tag = std::string(kMaxShareTagBytes + 1, 't')});
  expect_refused(long_tag, "must be 1 to 36 bytes");
  auto both = good();
  both.shares.push_back({.host_dir = "/srv", .socket_path = "/s", .tag = "a"});
  expect_refused(both, "not both");
  auto ro_socket = good();
  ro_socket.shares.push_back({.socket_path = "/s", .tag = "a", .read_only = true});
  expect_refused(ro_socket, "readonly=on is for a directory vmm shares");
  auto blk_tag = good();
  blk_tag.vhost_user.push_back(
      {.type = VhostUserConfig::Type::kBlock, .socket_path = "/s", .tag = "t"});
  expect_refused(blk_tag, "tag= is for fs devices");
}

TEST(ValidateConfig, EveryKindOfVirtioDeviceCountsTowardTheInterruptLines) {
  auto c = good();
  c.disks.push_back({"/a.img", true, ""});
  c.nets.push_back({"tap0", std::nullopt});
  c.vsock = VsockConfig{3, "/run/v.sock"};
  c.shares.push_back({.host_dir = "/srv", .tag = "a"});
  c.vhost_user.push_back({.type = VhostUserConfig::Type::kBlock, .socket_path = "/run/b.sock"});
  c.console.enabled = true;
  c.serial.mode = SerialConfig::Mode::kNone;  // the console has the terminal
  EXPECT_EQ(virtio_device_count(c), 6u);
  c.disks.resize(kMaxVirtioDevices - 5, DiskConfig{"/a.img", true, ""});
  EXPECT_NO_THROW(validate_config(c));
  // One more of any kind would have a GSI past the IOAPIC's pins; the vsock was the one that
  // slipped through before it was counted.
  auto with_disk = c;
  with_disk.disks.push_back({"/a.img", true, ""});
  expect_refused(with_disk, "at most 18 virtio devices");
  auto full_of_disks = good();
  full_of_disks.disks.assign(kMaxVirtioDevices, DiskConfig{"/a.img", true, ""});
  EXPECT_NO_THROW(validate_config(full_of_disks));
  full_of_disks.vsock = VsockConfig{3, "/run/v.sock"};
  expect_refused(full_of_disks, "--vsock/--share/--vhost-user/--console: 19 devices");
}

TEST(ValidateConfig, Command) {
  auto c = good();
  c.serial.mode = SerialConfig::Mode::kNone;
  c.shares.push_back({.host_dir = "/", .tag = "root", .read_only = true, .guest_path = "/"});
  c.command = GuestCommand{.argv = {"true"}, .cwd = "/tmp"};
  EXPECT_NO_THROW(validate_config(c));
  // The command's console is one more virtio device.
  EXPECT_EQ(virtio_device_count(c), 2u);

  auto no_root = c;
  no_root.shares[0].guest_path = "/mnt";
  expect_refused(no_root, "needs a share mounted at /");
  auto relative = c;
  relative.command->cwd = "tmp";
  expect_refused(relative, "not absolute");
  auto empty = c;
  empty.command->argv.clear();
  expect_refused(empty, "needs a command");
  auto console = c;
  console.console.enabled = true;
  expect_refused(console, "a command's console is its own");
}

TEST(ValidateConfig, ConsoleWantsTheTerminalToItself) {
  auto c = good();
  c.console.enabled = true;
  expect_refused(c, "--console and --serial stdio");
  c.serial.mode = SerialConfig::Mode::kNone;
  EXPECT_NO_THROW(validate_config(c));
}

}  // namespace
}  // namespace vmm
