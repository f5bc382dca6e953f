// Boots guest-tests/smp: the MADT and the MP table list every vCPU (the guest fails when the MP
// table is missing, malformed or disagrees with the MADT) and each one starts through
// INIT/SIPI/SIPI.
#include <gtest/gtest.h>

#include <fmt/core.h>

#include "tests/integration/guest_run.hpp"

namespace vmm::testing {
namespace {

class SmpGuest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }
};

TEST_P(SmpGuest, StartsEveryCpu) {
  const uint32_t cpus = GetParam();
  const ProcessResult r = run_vmm(GuestRun{
      .kernel = test_guest_image("smp"), .cpus = cpus, .cmdline = fmt::format("cpus={}", cpus)});
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_NE(r.out.find(fmt::format("smp: MADT lists {} cpus", cpus)), std::string::npos)
      << describe(r);
  EXPECT_NE(r.out.find(fmt::format("smp: MP table lists {} cpus", cpus)), std::string::npos)
      << describe(r);
  for (uint32_t apic_id = 1; apic_id < cpus; ++apic_id) {
    EXPECT_NE(r.out.find(fmt::format("cpu with APIC ID {} is up", apic_id)), std::string::npos)
        << describe(r);
  }
  EXPECT_NE(r.out.find(fmt::format("smp: {} of {} cpus up", cpus, cpus)), std::string::npos)
      << describe(r);
}

INSTANTIATE_TEST_SUITE_P(Cpus, SmpGuest, ::testing::Values(1u, 2u, 4u),
                         [](const auto& info) { return fmt::format("{}cpus", info.param); });

}  // namespace
}  // namespace vmm::testing
