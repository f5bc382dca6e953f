#include "vmm/machine.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "base/util/error.hpp"
#include "tests/boot/test_images.hpp"

namespace vmm {
namespace {

std::string create_error(const MachineConfig& config) {
  try {
    Machine::create(config);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A kernel that passes the host-side checks (which come before KVM is opened).
const std::string& test_kernel() {
  static const std::string path = [] {
    std::string file = ::testing::TempDir() + "/vmm_machine_test_bzImage";
    const std::vector<uint8_t> image = boot::test_images::make_bzimage();
    std::ofstream(file, std::ios::binary)
        .write(reinterpret_cast<const char*>(image.data()),
               static_cast<std::streamsize>(image.size()));
    return file;
  }();
  return path;
}

MachineConfig config_with_device(const std::string& device) {
  MachineConfig config;
  config.kernel_path = test_kernel();
  config.kvm_device = device;
  return config;
}

TEST(MachineCreate, MissingKvmDeviceSaysKvmIsNotAvailable) {
  EXPECT_EQ(create_error(config_with_device("/nonexistent/kvm")),
            "/nonexistent/kvm: No such file or directory (KVM is not available: load kvm-intel or "
            "kvm-amd)");
}

TEST(MachineCreate, SomethingElseThanKvmIsRefused) {
  EXPECT_EQ(create_error(config_with_device("/dev/null")).rfind("/dev/null: not a KVM device", 0),
            0u);
}

TEST(MachineCreate, HostFilesAreCheckedBeforeKvmIsOpened) {
  MachineConfig config = config_with_device("/nonexistent/kvm");
  config.kernel_path = "/nonexistent/bzImage";
  EXPECT_EQ(create_error(config), "--kernel /nonexistent/bzImage: No such file or directory");
  config = config_with_device("/nonexistent/kvm");
  config.disks.emplace_back().path = "/nonexistent/disk.img";
  EXPECT_EQ(create_error(config), "--disk /nonexistent/disk.img: No such file or directory");
  config = config_with_device("/nonexistent/kvm");
  config.api_socket = "/nonexistent/api.sock";
  EXPECT_EQ(create_error(config),
            "--api-socket /nonexistent/api.sock: /nonexistent: No such file or directory");
}

TEST(MachineCreate, ConfigIsValidatedBeforeKvmIsOpened) {
  MachineConfig config = config_with_device("/nonexistent/kvm");
  config.cpus = 0;
  EXPECT_EQ(create_error(config), "--cpus 0: must be between 1 and 254");
}

MachineExit exit_for(MachineExit::Reason reason, int debug_code = 0) {
  MachineExit exit;
  exit.reason = reason;
  exit.debug_code = debug_code;
  return exit;
}

TEST(MachineExit, StatusesAreTheDocumentedOnes) {
  using Reason = MachineExit::Reason;
  EXPECT_EQ(exit_for(Reason::kPowerOff).exit_status(), 0);
  EXPECT_EQ(exit_for(Reason::kReboot).exit_status(), 3);
  EXPECT_EQ(exit_for(Reason::kPanic).exit_status(), 4);
  EXPECT_EQ(exit_for(Reason::kTimeout).exit_status(), 124);
  EXPECT_EQ(exit_for(Reason::kStopped).exit_status(), 5);
  EXPECT_EQ(exit_for(Reason::kError).exit_status(), 1);
  EXPECT_EQ(exit_for(Reason::kDebugExit, 42).exit_status(), 42);
}

}  // namespace
}  // namespace vmm
