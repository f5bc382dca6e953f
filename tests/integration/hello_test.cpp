// Boots guest-tests/hello: the loader contract, the command line, exit-status passing, --timeout.
#include <gtest/gtest.h>

#include "tests/integration/guest_run.hpp"

namespace vmm::testing {
namespace {

class HelloGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }

  GuestRun hello(const std::string& cmdline) const {
    return GuestRun{.kernel = test_guest_image("hello"), .cmdline = cmdline};
  }
};

TEST_F(HelloGuest, BootsPrintsItsCommandLineAndExitsZero) {
  const ProcessResult r = run_vmm(hello("console=ttyS0 greeting-marker-42"));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_NE(r.out.find("hello from the test guest"), std::string::npos) << describe(r);
  EXPECT_NE(r.out.find("cmdline: console=ttyS0 greeting-marker-42"), std::string::npos)
      << describe(r);
}

TEST_F(HelloGuest, ItsExitStatusBecomesVmmsExitStatus) {
  const ProcessResult r = run_vmm(hello("exit=7"));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 7) << describe(r);
  EXPECT_NE(r.out.find("exiting with status 7"), std::string::npos) << describe(r);
}

// Filters are on by default (every other test runs with them); --seccomp off runs without.
TEST_F(HelloGuest, RunsWithSeccompOff) {
  GuestRun run = hello("console=ttyS0");
  run.extra_args = {"--seccomp", "off", "--log-level", "info"};
  const ProcessResult r = run_vmm(run);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_NE(r.out.find("hello from the test guest"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("seccomp filters are off"), std::string::npos) << describe(r);
}

TEST_F(HelloGuest, TimeoutStopsAGuestThatNeverExits) {
  GuestRun run = hello("spin");
  run.vmm_timeout_seconds = 2;
  const auto start = std::chrono::steady_clock::now();
  const ProcessResult r = run_vmm(run);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 124) << describe(r);
  EXPECT_NE(r.out.find("spinning"), std::string::npos) << describe(r);
  EXPECT_GE(elapsed, std::chrono::seconds(2));
}

// Without --debug-exit, port 0xf4 is not there: the guest's "exit=5" (vmm's "stopped by the
// host") is a write to nowhere, the guest halts, and the timeout ends it.
TEST_F(HelloGuest, WithoutDebugExitItCannotChooseVmmsExitStatus) {
  GuestRun run = hello("exit=5");
  run.debug_exit = false;
  run.vmm_timeout_seconds = 2;
  const ProcessResult r = run_vmm(run);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 124) << describe(r);
  EXPECT_NE(r.out.find("exiting with status 5"), std::string::npos) << describe(r);
}

struct PlatformExit {
  const char* word;
  int status;
  const char* message;
};

void PrintTo(const PlatformExit& exit, std::ostream* os) {
  *os << exit.word;
}

class HelloPlatformExit : public HelloGuest, public ::testing::WithParamInterface<PlatformExit> {};

// Each way a guest can end the machine reaches vmm's exit status (see vmm --help).
TEST_P(HelloPlatformExit, EndsVmmWithItsStatus) {
  const ProcessResult r = run_vmm(hello(GetParam().word));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, GetParam().status) << describe(r);
  EXPECT_NE(r.out.find(GetParam().message), std::string::npos) << describe(r);
  EXPECT_EQ(r.out.find("exiting with status"), std::string::npos) << describe(r);
}

// A triple fault is a reset, as on a PC, and vmm says so at warn level with the vCPU's registers
// (read on the vCPU thread: its seccomp filter allows that).
TEST_F(HelloGuest, ATripleFaultIsAResetThatVmmLogs) {
  const ProcessResult r = run_vmm(hello("triplefault"));
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 3) << describe(r);
  EXPECT_NE(r.err.find("vmm: warning: vCPU 0: triple fault (the guest is reset) at rip 0x"),
            std::string::npos)
      << describe(r);
  EXPECT_NE(r.err.find(", cr0 0x"), std::string::npos) << describe(r);
}

INSTANTIATE_TEST_SUITE_P(All, HelloPlatformExit,
                         ::testing::Values(PlatformExit{"reboot", 3, "resetting through the i8042"},
                                           PlatformExit{"poweroff", 0, "entering ACPI S5"},
                                           PlatformExit{"panic", 4, "reporting a panic"},
                                           PlatformExit{"triplefault", 3, "faulting with no IDT"}),
                         [](const auto& info) { return std::string(info.param.word); });

}  // namespace
}  // namespace vmm::testing
