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

}  // namespace
}  // namespace vmm::testing
