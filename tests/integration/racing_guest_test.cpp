// Issue 11's racing guest, on a whole machine: guest-tests/virtio_race keeps its virtio-blk queue
// full for ever (avail->idx = used->idx + size, every slot the same head, a chain the device
// refuses at once) while the test pauses, resumes and stops the machine through the library API, or
// lets its timeout end it. Each call must return within a liveness bound (not a speed check: the
// healthy calls take milliseconds). tests/devices/virtio/racing_guest_test.cpp is the device-level
// version, which also bounds the batch; here the whole path counts: vCPU kick, pause gate, the
// event loop serving the latch and the pause request between the device's batches.
//
// A vmm whose device pops until the queue is empty never returns from its notification while the
// guest keeps pace: pause still works (the kicked vCPU parks and stops refilling), stop and the
// timeout don't (only the loop thread stops the vCPUs; the flood makes no exit that would let a
// vCPU notice a stop by itself). The test then fails naming the call and printing the state; the
// guest gives up flooding after `seconds=`, so the machine still ends and the test program with it.
// Keeping pace takes the vCPU and the loop thread running in parallel: in the nested lab (two TCG
// vCPUs on two shared cores) a build with block's budget removed passed here, the device draining
// the 16-entry ring between the guest's time slices. The bound on the batch itself is
// RacingGuestTest's; this test is the whole machine's liveness under the flood.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <fmt/core.h>

#include "tests/devices/temp_dir.hpp"
#include "tests/integration/console_capture.hpp"
#include "tests/integration/guest_run.hpp"
#include "vmm/machine.hpp"
#include "vmm/machine/control_protocol.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Each call's liveness bound, and the boot's (stretched in the nested lab).
const auto kBound = liveness_bound(20s);
// The guest's safety net: it floods for at least this long, far beyond what a healthy test takes
// (about a second) and beyond the bound of a call that hangs, so that call is caught first.
const auto kGuestGivesUp = 3 * kBound;
constexpr const char* kFlooding = "virtio-race: flooding queue 0";
constexpr const char* kProgress = " chains answered";
constexpr const char* kGaveUp = "virtio-race: gave up flooding";
// The guest's queue (lib/virtio.h's VIRTIO_QUEUE_SIZE: vmm offers more).
constexpr uint64_t kQueueSize = 16;
// Racing time between two calls: the resumed vCPU refills the ring again.
constexpr auto kRace = 300ms;

using Console = ConsoleCapture;

class RacingGuestMachine : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
    std::ofstream(dir_.file("disk.img"), std::ios::binary) << std::string(1 << 20, '\0');
  }

  MachineConfig config() {
    MachineConfig config;
    config.kernel_path = test_guest_image("virtio_race");
    config.cmdline = fmt::format("console=ttyS0 seconds={}",
                                 std::chrono::ceil<std::chrono::seconds>(kGuestGivesUp).count());
    config.memory_bytes = 32 << 20;
    config.disks.push_back({dir_.file("disk.img"), false, "race0", {}});
    config.serial = console_.config();
    return config;
  }

  // Where things stood: for a call that did not return in time, and for any failed expectation.
  // vmm's own log comes on top: at a timeout the machine logs each vCPU's rip and each virtio
  // device's transport, queue and device state.
  std::string state(const Machine& machine, const std::string& what) const {
    return fmt::format("{}\n  machine state: {}\n  calls so far: {}\n  the guest's console:\n{}",
                       what, state_name(machine.state()), calls_, console_.text());
  }

  // Runs `call` on a thread of its own and fails, printing the state, unless it returns within
  // kBound. A call that hangs is waited for until the guest gives up flooding (which frees a
  // device stuck in its notification); one that outlives even that ends the program, as the
  // machine can't be destroyed under it. `also` adds to the bound what the call waits for by
  // design (a timeout).
  void timed(Machine& machine, const std::string& name, const std::function<void()>& call,
             std::chrono::milliseconds also = 0ms) {
    const auto start = Clock::now();
    auto done = std::async(std::launch::async, call);
    const bool in_time = done.wait_for(kBound + also) == std::future_status::ready;
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    calls_ += fmt::format("{}{} {} ms", calls_.empty() ? "" : ", ", name, took.count());
    if (in_time) {
      done.get();  // rethrows what the call threw
      return;
    }
    ADD_FAILURE() << state(machine, fmt::format("{}() did not return within {} ms while the guest "
                                                "kept its queue full",
                                                name, (kBound + also).count()));
    if (done.wait_for(kGuestGivesUp + kBound) != std::future_status::ready) {
      fmt::print(stderr, "{}\n", state(machine, name + "() never returned; giving up"));
      std::_Exit(1);
    }
    done.get();
  }

  // Boots the racing guest and waits for its flood.
  std::unique_ptr<Machine> start_flooding(const MachineConfig& config) {
    auto machine = Machine::create(config);
    machine->start();
    EXPECT_TRUE(console_.wait_for(kFlooding, kBound))
        << state(*machine, "the guest never started flooding");
    return machine;
  }

  // The race was on: the guest flooded for a second or more (its progress line) and the device
  // answered more than a queue's worth meanwhile.
  void expect_raced(const Machine& machine) {
    EXPECT_TRUE(console_.has(kProgress))
        << state(machine, "the guest never said how far the device had come");
    EXPECT_GT(answered(), kQueueSize)
        << state(machine, "the device answered hardly any chain of the flood");
  }

  // The chains the device answered, from the guest's last progress line (0 without one).
  uint64_t answered() const {
    const std::string text = console_.text();
    const size_t end = text.rfind(kProgress);
    if (end == std::string::npos) return 0;
    const size_t start = text.rfind(", ", end);
    return start == std::string::npos ? 0 : std::stoull(text.substr(start + 2, end - start - 2));
  }

  devices::testing::TempDir dir_;
  Console console_;
  std::string calls_;
};

TEST_F(RacingGuestMachine, PauseResumeAndStopReturnWhileTheGuestKeepsItsDiskQueueFull) {
  auto machine = start_flooding(config());
  ASSERT_TRUE(console_.wait_for(kProgress, kBound))
      << state(*machine, "the guest started flooding, but never said how far the device had come");
  expect_raced(*machine);
  if (HasFailure()) return;
  for (int round = 0; round < 2; ++round) {
    timed(*machine, "pause", [&] { machine->pause(); });
    EXPECT_EQ(machine->state(), MachineState::kPaused) << state(*machine, "after pause()");
    timed(*machine, "resume", [&] { machine->resume(); });
    EXPECT_EQ(machine->state(), MachineState::kRunning) << state(*machine, "after resume()");
    std::this_thread::sleep_for(kRace);
  }
  std::optional<MachineExit> exit;
  timed(*machine, "stop", [&] {
    machine->stop();
    exit = machine->wait();
  });
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped)
      << state(*machine, "ended: " + exit->describe());
  // Otherwise the calls above raced nobody for part of the time.
  EXPECT_FALSE(console_.has(kGaveUp)) << state(*machine, "the guest stopped flooding on its own");
}

TEST_F(RacingGuestMachine, TheTimeoutEndsTheMachineWhileTheGuestKeepsItsDiskQueueFull) {
  MachineConfig with_timeout = config();
  // Long enough for the guest to boot, measure its clock (up to 2 s) and flood for a second. Its
  // clock is the host's wall clock: nothing to stretch in the lab.
  with_timeout.timeout_seconds = 6;
  auto machine = start_flooding(with_timeout);
  if (HasFailure()) return;
  std::optional<MachineExit> exit;
  timed(
      *machine, "wait", [&] { exit = machine->wait(); },
      std::chrono::seconds(with_timeout.timeout_seconds));
  ASSERT_TRUE(exit) << state(*machine, "the timeout did not end the machine");
  EXPECT_EQ(exit->reason, MachineExit::Reason::kTimeout)
      << state(*machine, "ended: " + exit->describe());
  EXPECT_EQ(exit->exit_status(), kExitStatusTimeout);
  expect_raced(*machine);
  EXPECT_FALSE(console_.has(kGaveUp)) << state(*machine, "the guest stopped flooding on its own");
}

}  // namespace
}  // namespace vmm::testing
