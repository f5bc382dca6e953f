// Machine::snapshot and Machine::restore (issue 13) with the compute test guest: a guest
// snapshotted mid-computation and restored, once or twice at once from one snapshot, finishes with
// the result of an uninterrupted run; a damaged snapshot is refused with a one-line error naming
// its file, and nothing starts.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/util/error.hpp"
#include "tests/integration/console_capture.hpp"
#include "tests/integration/guest_run.hpp"
#include "vmm/machine.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Safety nets only: a healthy run of the compute guest takes a few seconds. Each machine has a
// timeout of its own, so a guest that hangs ends with vmm's report of where its vCPUs stood (on
// stderr); the test waits a little longer. Both are stretched in the lab.
const auto kGuestTimeout = liveness_bound(60s);
const auto kDeadline = kGuestTimeout + liveness_bound(10s);
const auto kGuestTimeoutSeconds =
    static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(kGuestTimeout).count());
// guest-tests/compute's exit status once it printed its result.
constexpr int kComputeExitStatus = 42;

MachineConfig compute_guest() {
  MachineConfig config;
  config.kernel_path = test_guest_image("compute");
  config.cmdline = "console=ttyS0";
  config.memory_bytes = 32 << 20;
  config.serial.mode = SerialConfig::Mode::kNone;
  config.timeout_seconds = kGuestTimeoutSeconds;
  config.debug_exit = true;
  return config;
}

// A new directory in GoogleTest's temporary folder, removed with its content when this goes.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    std::string pattern = ::testing::TempDir() + "vmm-snapshot-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp {}: cannot create it", pattern);
    path_ = pattern;
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  // `name` inside this directory (not created).
  std::string operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// The "compute: result <hex>" line of `console`, or "" when the guest printed none.
std::string result_line(const std::string& console) {
  const size_t begin = console.find("compute: result ");
  if (begin == std::string::npos) return "";
  return console.substr(begin, console.find_first_of("\r\n", begin) - begin);
}

struct Outcome {
  MachineExit exit;
  std::string result;  // result_line() of its console
};

// Waits for a started machine to end; nullopt if it outlives the deadline.
std::optional<Outcome> outcome_of(Machine& machine, const ConsoleCapture& console) {
  const std::optional<MachineExit> exit = machine.wait(kDeadline);
  if (!exit) return std::nullopt;
  return Outcome{*exit, result_line(console.text())};
}

// The guest waits after its first step for a byte of console input ("compute: waiting"): the
// snapshot is taken there, and the machine that carries on gets the byte.
constexpr char kWaiting[] = "compute: waiting";
void go_on(Machine& machine) {
  const uint8_t go = 'g';
  machine.send_console_input({&go, 1});
}
void go_on_after_waiting(Machine& machine, ConsoleCapture& console) {
  if (!console.wait_for(kWaiting, kDeadline)) {
    fail("the compute guest never got to wait; console: {}", console.text());
  }
  go_on(machine);
}

// What the compute guest ends with when nothing interrupts it (run once per process).
const Outcome& uninterrupted() {
  static const Outcome outcome = [] {
    ConsoleCapture console;
    MachineConfig config = compute_guest();
    config.serial = console.config();
    auto machine = Machine::create(config);
    machine->start();
    go_on_after_waiting(*machine, console);
    const std::optional<Outcome> ended = outcome_of(*machine, console);
    if (!ended || ended->exit.exit_status() != kComputeExitStatus || ended->result.empty()) {
      fail("the uninterrupted compute guest did not finish ({}); console: {}",
           ended ? ended->exit.describe() : "still running", console.text());
    }
    return *ended;
  }();
  return outcome;
}

// Runs the compute guest until it waits after its first step, snapshots it into `dir` (paused)
// and destroys it: the snapshot is of a guest in the middle of its computation.
void snapshot_mid_computation(const std::string& dir) {
  ConsoleCapture console;
  MachineConfig config = compute_guest();
  config.serial = console.config();
  auto machine = Machine::create(config);
  machine->start();
  ASSERT_TRUE(console.wait_for(kWaiting, kDeadline)) << console.text();
  machine->snapshot(dir, /*stay_paused=*/true);
  EXPECT_EQ(machine->state(), MachineState::kPaused);
  EXPECT_FALSE(console.has("compute: result")) << console.text();
}

// A machine restored from `dir` whose console goes to `console`.
std::unique_ptr<Machine> restore_from(const std::string& dir, ConsoleCapture& console) {
  RestoreConfig restore;
  restore.snapshot_dir = dir;
  restore.serial = console.config();
  restore.timeout_seconds = kGuestTimeoutSeconds;
  restore.debug_exit = true;  // the restoring process's choice, like the timeout
  return Machine::restore(restore);
}

// The restored guest went on from where it was: the uninterrupted run's result and exit, and
// no sign of a fresh start.
void expect_finished_like_uninterrupted(Machine& machine, const ConsoleCapture& console) {
  const std::optional<Outcome> restored = outcome_of(machine, console);
  ASSERT_TRUE(restored) << "still running; console: " << console.text();
  EXPECT_EQ(restored->exit.reason, MachineExit::Reason::kDebugExit) << restored->exit.describe();
  EXPECT_EQ(restored->exit.exit_status(), uninterrupted().exit.exit_status());
  EXPECT_EQ(restored->result, uninterrupted().result) << console.text();
  EXPECT_FALSE(console.has("compute: step 0")) << "the guest started over: " << console.text();
}

size_t entries_of(const char* dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

class SnapshotRestore : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }

  // A snapshot of the compute guest that restores, for a test to damage.
  fs::path restorable_snapshot() {
    EXPECT_NO_FATAL_FAILURE(snapshot_mid_computation(snapshot_));
    ConsoleCapture console;
    EXPECT_NO_THROW(restore_from(snapshot_, console));
    return snapshot_;
  }

  // Machine::restore refuses the damaged snapshot with one line naming `named` and saying
  // `words`, and leaves no thread and no fd behind.
  void expect_refused(const fs::path& named, const std::string& words) {
    const size_t threads_before = entries_of("/proc/self/task");
    const size_t fds_before = entries_of("/proc/self/fd");
    ConsoleCapture console;
    try {
      restore_from(snapshot_, console);
      ADD_FAILURE() << "restored a damaged snapshot";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      EXPECT_NE(message.find(named.string()), std::string::npos) << message;
      EXPECT_NE(message.find(words), std::string::npos) << message;
    }
    EXPECT_EQ(entries_of("/proc/self/task"), threads_before) << "a thread was left running";
    EXPECT_EQ(entries_of("/proc/self/fd"), fds_before) << "an fd was left open";
  }

  TemporaryDirectory scratch_;
  const std::string snapshot_ = scratch_ / "snapshot";
};

TEST_F(SnapshotRestore, ARestoredGuestFinishesWithTheUninterruptedResult) {
  uninterrupted();  // the reference run first, alone
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_computation(snapshot_));
  ConsoleCapture console;
  auto machine = restore_from(snapshot_, console);
  EXPECT_EQ(machine->state(), MachineState::kCreated);
  machine->start();
  go_on(*machine);
  expect_finished_like_uninterrupted(*machine, console);
}

TEST_F(SnapshotRestore, TwoMachinesRestoredAtOnceFromOneSnapshotBothFinish) {
  uninterrupted();  // the reference run first, alone
  ASSERT_NO_FATAL_FAILURE(snapshot_mid_computation(snapshot_));
  std::array<ConsoleCapture, 2> consoles;
  std::array<std::unique_ptr<Machine>, 2> machines;
  for (size_t i = 0; i < machines.size(); ++i) machines[i] = restore_from(snapshot_, consoles[i]);
  for (auto& machine : machines) {
    machine->start();
    go_on(*machine);
  }
  for (size_t i = 0; i < machines.size(); ++i) {
    SCOPED_TRACE(fmt::format("restored machine {}", i));
    expect_finished_like_uninterrupted(*machines[i], consoles[i]);
  }
}

TEST_F(SnapshotRestore, RefusesATruncatedMemoryFile) {
  const fs::path memory = restorable_snapshot() / "memory";
  ASSERT_FALSE(HasFailure());
  fs::resize_file(memory, fs::file_size(memory) / 2);
  expect_refused(memory, "truncated memory file");
}

TEST_F(SnapshotRestore, RefusesAStateFileWithAFlippedByte) {
  const fs::path state = restorable_snapshot() / "state";
  ASSERT_FALSE(HasFailure());
  const auto middle = static_cast<std::streamoff>(fs::file_size(state) / 2);
  std::fstream file(state, std::ios::in | std::ios::out | std::ios::binary);
  char byte = 0;
  file.seekg(middle).read(&byte, 1);
  file.seekp(middle).put(static_cast<char>(byte ^ 0x01));
  file.close();
  expect_refused(state, "checksum mismatch");
}

// A snapshot restores only into the vmm that wrote it. The error names the snapshot's directory.
TEST_F(SnapshotRestore, RefusesAManifestFromAnotherVmmVersion) {
  const fs::path snapshot = restorable_snapshot();
  ASSERT_FALSE(HasFailure());
  const fs::path path = snapshot / "manifest.json";
  nlohmann::json manifest = nlohmann::json::parse(std::ifstream(path));
  manifest["vmm_version"] = "0.0.0-another-vmm";
  std::ofstream(path, std::ios::trunc) << manifest.dump(2);
  expect_refused(snapshot, "made by vmm 0.0.0-another-vmm");
}

}  // namespace
}  // namespace vmm::testing
