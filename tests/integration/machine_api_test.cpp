// Drives vmm::Machine (the library API) on this host's /dev/kvm with the hello test guest:
// start/wait/stop, pause/resume, console callback and input, many machines in one process, and
// that create/destroy leaks no fd and no thread.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/legacy/serial_16550.hpp"
#include "tests/integration/console_capture.hpp"
#include "tests/integration/guest_run.hpp"
#include "vmm/machine.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;

// Safety nets only: a healthy run takes a fraction of them (stretched in the nested lab).
const auto kDeadline = liveness_bound(60s);

using Console = ConsoleCapture;

MachineConfig hello(const std::string& cmdline) {
  MachineConfig config;
  config.kernel_path = test_guest_image("hello");
  config.cmdline = "console=ttyS0 " + cmdline;
  config.memory_bytes = 32 << 20;
  config.serial.mode = SerialConfig::Mode::kNone;
  config.debug_exit = true;
  return config;
}

// Entries of /proc/self/fd (opendir's own fd included, the same each time) or /proc/self/task.
size_t count_entries(const char* dir) {
  size_t n = 0;
  DIR* d = ::opendir(dir);
  if (d == nullptr) return 0;
  while (const dirent* entry = ::readdir(d)) {
    if (entry->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

size_t open_fds() {
  return count_entries("/proc/self/fd");
}

size_t threads() {
  return count_entries("/proc/self/task");
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

class MachineApi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }
};

TEST_F(MachineApi, RunHandsTheConsoleToTheCallbackAndReturnsTheGuestsStatus) {
  Console console;
  MachineConfig config = hello("exit=7");
  config.serial = console.config();
  auto machine = Machine::create(config);
  EXPECT_EQ(machine->state(), MachineState::kCreated);
  const MachineExit exit = machine->run();
  EXPECT_EQ(exit.reason, MachineExit::Reason::kDebugExit) << exit.describe();
  EXPECT_EQ(exit.exit_status(), 7);
  EXPECT_EQ(machine->state(), MachineState::kStopped);
  EXPECT_NE(console.text().find("hello from the test guest"), std::string::npos);
  EXPECT_NE(console.text().find("exiting with status 7"), std::string::npos);
  // wait() keeps answering once stopped.
  ASSERT_TRUE(machine->wait(0ms));
  EXPECT_EQ(machine->wait(0ms)->exit_status(), 7);
}

TEST_F(MachineApi, MetricsShowTheGuestsExits) {
  Console console;
  MachineConfig config = hello("exit=7");
  config.serial = console.config();
  auto machine = Machine::create(config);
  EXPECT_EQ(machine->metrics().uptime, 0ms);
  ASSERT_EQ(machine->metrics().vcpus.size(), 1u);
  EXPECT_TRUE(machine->metrics().vcpus[0].exits.empty());
  machine->run();
  const MachineMetrics metrics = machine->metrics();
  // The greeting went out byte by byte through COM1's port, and the status through debug-exit.
  EXPECT_GE(metrics.vcpus[0].exits.at("io"), std::string("hello from the test guest").size());
  EXPECT_GT(metrics.uptime, 0ms);
  EXPECT_NE(metrics.longest_handler_fd, -1);  // the console's output, at least
}

// A live change (the control socket's set-rate-limit) shows in config(), which other threads may
// read meanwhile: it hands out a copy.
TEST_F(MachineApi, RateLimitChangesShowInTheConfigWhileOtherThreadsReadIt) {
  MachineConfig config = hello("spin");
  DiskConfig& disk = config.disks.emplace_back();
  disk.path = test_guest_image("hello");
  disk.read_only = true;
  disk.rate_limit = {.bytes_per_second = 1 << 20, .bytes_burst = 1 << 20};
  auto machine = Machine::create(config);
  machine->start();
  std::atomic<bool> done = false;
  std::thread reader([&] {
    while (!done) {
      const uint64_t bw = machine->config().disks.at(0).rate_limit.bytes_per_second;
      EXPECT_TRUE(bw == 1 << 20 || (bw >= 1000 && bw < 1100)) << bw;
    }
  });
  for (uint64_t bw = 1000; bw < 1100; ++bw) {
    machine->set_disk_rate_limit(0, {.bytes_per_second = bw, .bytes_burst = 0});
  }
  done = true;
  reader.join();
  EXPECT_EQ(machine->config().disks[0].rate_limit, (RateLimitConfig{.bytes_per_second = 1099}));
  EXPECT_THROW(machine->set_disk_rate_limit(1, {}), Error);
  machine->stop();
  ASSERT_TRUE(machine->wait(kDeadline));
}

TEST_F(MachineApi, WaitTimesOutOnASpinningGuestAndStopEndsIt) {
  Console console;
  MachineConfig config = hello("spin");
  config.serial = console.config();
  auto machine = Machine::create(config);
  EXPECT_FALSE(machine->wait(10ms)) << "never started, yet stopped";
  machine->start();
  EXPECT_THROW(machine->start(), Error);
  ASSERT_TRUE(console.wait_for("spinning", kDeadline)) << console.text();
  EXPECT_FALSE(machine->wait(100ms));
  EXPECT_EQ(machine->state(), MachineState::kRunning);
  machine->stop();
  EXPECT_EQ(machine->state(), MachineState::kStopped);
  const auto exit = machine->wait(kDeadline);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped);
  EXPECT_EQ(exit->exit_status(), kExitStatusStopped);
  machine->stop();  // no-op once stopped
  EXPECT_EQ(machine->wait()->reason, MachineExit::Reason::kStopped);
}

TEST_F(MachineApi, TheFirstReasonWins) {
  auto machine = Machine::create(hello("exit=9"));
  machine->start();
  ASSERT_TRUE(machine->wait(kDeadline));
  machine->stop();
  EXPECT_EQ(machine->wait()->exit_status(), 9);
}

TEST_F(MachineApi, StopBeforeStart) {
  auto machine = Machine::create(hello("spin"));
  EXPECT_THROW(machine->pause(), Error);
  EXPECT_THROW(machine->resume(), Error);
  machine->stop();
  EXPECT_EQ(machine->state(), MachineState::kStopped);
  const auto exit = machine->wait(0ms);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped);
  EXPECT_THROW(machine->start(), Error);
}

// The tick guest prints "tick N" now and then: while paused no line may appear; after the resume
// they continue from where they were.
void pause_and_resume(uint32_t cpus) {
  Console console;
  MachineConfig config = hello("tick");
  config.cpus = cpus;
  config.serial = console.config();
  auto machine = Machine::create(config);
  machine->start();
  ASSERT_TRUE(console.wait_for("tick 2\r\n", kDeadline)) << console.text();
  for (int round = 0; round < 3; ++round) {
    machine->pause();
    EXPECT_EQ(machine->state(), MachineState::kPaused);
    machine->pause();  // no-op
    const std::string at_pause = console.text();
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(console.text(), at_pause) << "the guest wrote while paused";
    EXPECT_FALSE(machine->wait(0ms));
    machine->resume();
    EXPECT_EQ(machine->state(), MachineState::kRunning);
    machine->resume();  // no-op
    // Two more ticks than at the pause: the guest runs again.
    const size_t last = at_pause.rfind("tick ");
    const unsigned long n = std::stoul(at_pause.substr(last + 5));
    ASSERT_TRUE(console.wait_for(fmt::format("tick {}\r\n", n + 2), kDeadline)) << console.text();
  }
  machine->pause();
  machine->stop();  // a paused machine stops too
  const auto exit = machine->wait(kDeadline);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped);
  EXPECT_THROW(machine->pause(), Error);
  EXPECT_THROW(machine->resume(), Error);
}

TEST_F(MachineApi, PauseHoldsTheGuestAndResumeContinuesIt) {
  pause_and_resume(1);
}

TEST_F(MachineApi, PauseAndResumeWithSeveralVcpus) {
  pause_and_resume(3);  // the application processors wait for a SIPI that never comes
}

TEST_F(MachineApi, DestroyingAPausedMachineReleasesIt) {
  Console console;
  MachineConfig config = hello("tick");
  config.serial = console.config();
  auto machine = Machine::create(config);
  machine->start();
  ASSERT_TRUE(console.wait_for("tick 0", kDeadline));
  machine->pause();
  machine.reset();
}

TEST_F(MachineApi, ConsoleInputReachesTheGuest) {
  Console console;
  MachineConfig config = hello("echo");
  config.serial = console.config();
  auto machine = Machine::create(config);
  const std::string early = "early-";
  machine->send_console_input(bytes_of(early));
  machine->start();
  ASSERT_TRUE(console.wait_for("echo: ready", kDeadline)) << console.text();
  // More than the UART's input queue holds: the rest waits in the machine until the guest reads.
  std::string input;
  for (size_t i = 0; input.size() < devices::Serial16550::kInputQueueCapacity; ++i)
    input += fmt::format("{:06}-", i);
  input += "end.";
  machine->send_console_input(bytes_of(input));
  const auto exit = machine->wait(kDeadline);
  const std::string so_far = console.text();
  ASSERT_TRUE(exit) << so_far.size() << " bytes on the console, " << early.size() + input.size()
                    << " sent; the last: "
                    << so_far.substr(so_far.size() - std::min<size_t>(so_far.size(), 100));
  EXPECT_EQ(exit->exit_status(), 0) << exit->describe();
  const std::string text = console.text();
  EXPECT_NE(text.find("early-" + input + "\r\necho: done"), std::string::npos)
      << text.substr(0, 300);
}

TEST_F(MachineApi, ConsoleToAFileDescriptor) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  MachineConfig config = hello("exit=3");
  config.serial.mode = SerialConfig::Mode::kFd;
  config.serial.fd = fds[1];
  {
    auto machine = Machine::create(config);
    EXPECT_EQ(machine->run().exit_status(), 3);
  }
  ::close(fds[1]);
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buffer, sizeof(buffer))) > 0)
    out.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  EXPECT_NE(out.find("hello from the test guest"), std::string::npos) << out;
}

// A console reader that stopped reading holds nothing up: the guest waits on the UART (its
// transmitter reads busy), pause, resume and stop each return (issue 11).
TEST_F(MachineApi, PauseResumeAndStopWhileTheConsoleReaderIsStuck) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  ASSERT_GT(::fcntl(fds[0], F_SETPIPE_SZ, 4096), 0);  // one page fills fast where exits are slow
  MachineConfig config = hello("flood=1048576 burst=4096");
  config.kernel_path = test_guest_image("console");
  config.serial.mode = SerialConfig::Mode::kFd;
  config.serial.fd = write_end.get();
  auto machine = Machine::create(config);
  machine->start();
  // Until the pipe stops filling: the guest is then waiting on THRE.
  int queued = -1;
  for (auto deadline = std::chrono::steady_clock::now() + kDeadline;
       std::chrono::steady_clock::now() < deadline;) {
    int now = 0;
    ASSERT_EQ(::ioctl(read_end.get(), FIONREAD, &now), 0);
    if (now > 0 && now == queued) break;
    queued = now;
    std::this_thread::sleep_for(300ms);
  }
  ASSERT_GT(queued, 0);
  // Each call on a thread of its own, so a hang fails here; the reader then comes back, so the
  // test can end.
  std::atomic<bool> unstuck = false;
  std::thread reader;
  auto returns = [&](const char* what, auto call) {
    auto done = std::async(std::launch::async, call);
    const bool returned = done.wait_for(kDeadline) == std::future_status::ready;
    EXPECT_TRUE(returned) << what << " did not return while the console reader was stuck";
    if (!returned && !unstuck.exchange(true)) {
      reader = std::thread([fd = read_end.get()] {
        char buffer[4096];
        while (::read(fd, buffer, sizeof(buffer)) > 0) {
        }
      });
    }
  };
  returns("pause()", [&] { machine->pause(); });
  EXPECT_EQ(machine->state(), MachineState::kPaused);
  returns("resume()", [&] { machine->resume(); });
  returns("stop()", [&] { machine->stop(); });
  const auto exit = machine->wait(kDeadline);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kStopped) << exit->describe();
  machine.reset();
  write_end.reset();
  if (reader.joinable()) reader.join();
}

TEST_F(MachineApi, ManyMachinesFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kMachinesPerThread = 5;
  std::vector<std::future<std::vector<int>>> results;
  results.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    results.push_back(std::async(std::launch::async, [t] {
      std::vector<std::unique_ptr<Machine>> machines;
      for (int i = 0; i < kMachinesPerThread; ++i) {
        machines.push_back(Machine::create(hello(fmt::format("exit={}", 10 + t * 10 + i))));
        machines.back()->start();
      }
      std::vector<int> statuses;
      for (auto& machine : machines) {
        const auto exit = machine->wait(kDeadline);
        statuses.push_back(exit ? exit->exit_status() : -1);
      }
      return statuses;
    }));
  }
  for (int t = 0; t < kThreads; ++t) {
    const std::vector<int> statuses = results[static_cast<size_t>(t)].get();
    for (int i = 0; i < kMachinesPerThread; ++i) {
      EXPECT_EQ(statuses[static_cast<size_t>(i)], 10 + t * 10 + i)
          << "thread " << t << " machine " << i;
    }
  }
}

TEST_F(MachineApi, CreatingAndDestroyingLeaksNoFdAndNoThread) {
  Machine::create(hello("exit=1"))->run();  // anything created once per process exists now
  {
    auto machine = Machine::create(hello("spin"));
    machine->start();
    machine->stop();
    machine->wait();
  }
  const size_t fds_before = open_fds();
  const size_t threads_before = threads();
  const long rounds = create_destroy_rounds();
  for (long i = 0; i < rounds; ++i) {
    auto machine = Machine::create(hello("spin"));
    if (i % 50 == 0) {
      machine->start();  // and destroyed while running
    } else if (i % 50 == 1) {
      machine->start();
      machine->stop();
      ASSERT_TRUE(machine->wait(kDeadline));
    }
  }
  EXPECT_EQ(open_fds(), fds_before);
  EXPECT_EQ(threads(), threads_before);
}

}  // namespace
}  // namespace vmm::testing
