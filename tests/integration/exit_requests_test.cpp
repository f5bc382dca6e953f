// Issue 11, item 5: a guest that makes two exit requests back to back (the debug-exit write, then
// an i8042 reset pulse, then hlt) must end vmm every time, run after run, as a process and through
// the library, with its second vCPU halted waiting for a SIPI that never comes; and a stop must
// reach halted vCPUs whatever signal mask the thread that started the machine had.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tests/integration/guest_run.hpp"
#include "vmm/machine.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;

// Safety nets only: a healthy run takes a fraction of them (stretched in the nested lab).
const auto kDeadline = liveness_bound(30s);
constexpr int kRuns = 10;

class ExitRequests : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }
};

MachineConfig hello(const std::string& cmdline, uint32_t cpus) {
  MachineConfig config;
  config.kernel_path = test_guest_image("hello");
  config.cmdline = "console=ttyS0 " + cmdline;
  config.cpus = cpus;
  config.memory_bytes = 128 << 20;
  config.serial.mode = SerialConfig::Mode::kNone;
  config.debug_exit = true;
  return config;
}

TEST_F(ExitRequests, DebugExitThenResetThenHaltEndsVmmRunAfterRun) {
  for (const uint32_t cpus : {1u, 2u}) {
    for (int i = 0; i < kRuns; ++i) {
      SCOPED_TRACE(std::to_string(cpus) + " vCPU(s), run " + std::to_string(i));
      GuestRun run{.kernel = test_guest_image("hello"),
                   .cpus = cpus,
                   .cmdline = "burst exit=9",
                   .vmm_timeout_seconds = 5,
                   .host_timeout = kDeadline};
      const ProcessResult r = run_vmm(run);
      ASSERT_TRUE(r.exited) << describe(r);
      // 9, not 3: the debug-exit write came first, and the reset after it never ran.
      ASSERT_EQ(r.exit_status, 9) << describe(r);
      ASSERT_NE(r.out.find('!'), std::string::npos) << describe(r);
    }
  }
}

TEST_F(ExitRequests, DebugExitThenResetThenHaltEndsTheMachineRunAfterRun) {
  for (int i = 0; i < kRuns; ++i) {
    SCOPED_TRACE("run " + std::to_string(i));
    auto machine = Machine::create(hello("burst exit=9", 2));
    machine->start();
    const auto exit = machine->wait(kDeadline);
    ASSERT_TRUE(exit.has_value()) << "the machine did not stop";
    EXPECT_EQ(exit->reason, MachineExit::Reason::kDebugExit) << exit->describe();
    EXPECT_EQ(exit->debug_code, 9);
  }
}

// A library user's worker thread may block every signal; the vCPU threads it starts inherit that
// mask, yet stop() must still bring a halted vCPU out of KVM_RUN.
TEST_F(ExitRequests, StopReachesHaltedVcpusStartedFromAThreadThatBlocksEverySignal) {
  std::mutex mutex;
  std::condition_variable spinning;
  std::string console;
  MachineConfig config = hello("spin", 2);
  config.serial.mode = SerialConfig::Mode::kCallback;
  config.serial.callback = [&](std::span<const uint8_t> bytes) {
    std::lock_guard lock(mutex);
    console.append(bytes.begin(), bytes.end());
    spinning.notify_all();
  };
  auto machine = Machine::create(config);
  std::thread starter([&] {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
    machine->start();
  });
  starter.join();
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(spinning.wait_for(lock, kDeadline, [&] {
      return console.find("spinning") != std::string::npos;
    })) << console;
  }
  std::this_thread::sleep_for(100ms);  // into its hlt
  machine->stop();
  const auto exit = machine->wait(kDeadline);
  if (!exit) {
    (void)machine.release();  // its destructor would wait for the vCPUs too; exit() ends them
    FAIL() << "stop() did not reach the halted vCPUs";
  }
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped);
}

}  // namespace
}  // namespace vmm::testing
