#include "vmm/machine.hpp"

#include <gtest/gtest.h>

#include "base/util/error.hpp"

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

MachineConfig config_with_device(const std::string& device) {
  MachineConfig config;
  config.kernel_path = "/nonexistent/bzImage";
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
