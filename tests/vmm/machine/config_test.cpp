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
