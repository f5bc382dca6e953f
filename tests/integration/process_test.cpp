#include "tests/integration/process.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <stdexcept>

namespace vmm::testing {
namespace {

using std::chrono::milliseconds;

TEST(RunProcess, CollectsOutputAndExitStatus) {
  const ProcessResult r =
      run_process({"/bin/sh", "-c", "echo to-out; echo to-err >&2; exit 3"}, milliseconds(10000));
  EXPECT_TRUE(r.exited);
  EXPECT_EQ(r.exit_status, 3);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "to-out\n");
  EXPECT_EQ(r.err, "to-err\n");
}

TEST(RunProcess, StdinIsEmpty) {
  const ProcessResult r = run_process({"/bin/sh", "-c", "cat; echo done"}, milliseconds(10000));
  EXPECT_EQ(r.exit_status, 0);
  EXPECT_EQ(r.out, "done\n");
}

TEST(RunProcess, KillsAProcessPastItsDeadline) {
  const ProcessResult r =
      run_process({"/bin/sh", "-c", "echo started; exec sleep 30"}, milliseconds(300));
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.exited);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_EQ(r.out, "started\n");
}

TEST(RunProcess, ThrowsWhenTheProgramIsMissing) {
  EXPECT_THROW(run_process({"/nonexistent/program"}, milliseconds(1000)), std::runtime_error);
}

}  // namespace
}  // namespace vmm::testing
