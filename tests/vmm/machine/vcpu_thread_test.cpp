#include "vmm/machine/vcpu_thread.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"

namespace vmm {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using testing::HasSubstr;

constexpr size_t kPage = 4096;
// How long a halted fake vCPU sleeps without a kick before it gives up and says so. A real vCPU
// would sleep for good (and the machine's stop with it).
constexpr milliseconds kHaltBound{3000};

// A vCPU that plays a script of exits and then halts, as a guest's "cli; hlt" does under KVM's
// in-kernel irqchip: KVM_RUN sleeps until a signal arrives. Entry follows KVM_RUN's contract: with
// immediate_exit set or the kick signal pending it returns -EINTR at once, and a signal that
// arrived while the thread was outside run() was handled there and is gone.
class ScriptedVcpu final : public VcpuHandle {
 public:
  using Step = std::function<void(kvm_run&, uint8_t* mapping)>;

  // `request_step`: the index of the step that makes a guest request (the debug-exit write).
  ScriptedVcpu(uint32_t id, std::vector<Step> script, size_t request_step = SIZE_MAX)
      : id_(id), storage_(3 * kPage / 8), script_(std::move(script)), request_step_(request_step) {}

  uint32_t id() const override { return id_; }
  std::span<uint8_t> run_mapping() const override {
    return {reinterpret_cast<uint8_t*>(storage_.data()), 3 * kPage};
  }
  kvm_regs regs() const override {
    kvm_regs regs{};
    regs.rip = 0x1234;
    return regs;
  }
  kvm_sregs sregs() const override { return {}; }

  int run() override {
    // The way into the kernel takes a while too: a kick that lands meanwhile is handled here, in
    // user space, and only immediate_exit still says it came. Widened, so the stress test below
    // meets that window often.
    const auto until = Clock::now() + std::chrono::microseconds(entries_.load() % 4 * 20);
    while (Clock::now() < until) {
    }
    sigset_t kick;
    sigset_t outside;
    sigemptyset(&kick);
    sigaddset(&kick, VcpuThread::kick_signal());
    ::pthread_sigmask(SIG_BLOCK, &kick, &outside);
    const int result = enter(outside);
    // Back in user space: a kick that came meanwhile is handled now, as after the ioctl.
    ::pthread_sigmask(SIG_SETMASK, &outside, nullptr);
    return result;
  }

  // KVM_RUN entries that ran the guest after the exit that made the guest request: it ran on.
  int entries_after_request() const { return entries_after_request_.load(); }
  // Halts that ended with no kick, after kHaltBound.
  int lost_kicks() const { return lost_kicks_.load(); }
  int entries() const { return entries_.load(); }

 private:
  kvm_run& state() { return *reinterpret_cast<kvm_run*>(storage_.data()); }

  int enter(const sigset_t& outside) {
    ++entries_;
    // Either way KVM_RUN returns before the guest runs an instruction (it only completes the
    // exit's I/O, as the vCPU thread's settle before a pause relies on).
    if (std::atomic_ref<uint8_t>(state().immediate_exit).load() != 0) return -EINTR;
    sigset_t pending;
    ::sigpending(&pending);
    if (sigismember(&pending, VcpuThread::kick_signal()) == 1) return -EINTR;
    if (requested_) ++entries_after_request_;
    if (next_ < script_.size()) {
      if (next_ == request_step_) requested_ = true;
      script_[next_++](state(), reinterpret_cast<uint8_t*>(storage_.data()));
      return 0;
    }
    // Halted: sleep until a signal is delivered (with the thread's own mask, as KVM's wait sees
    // it: a blocked kick would never wake it).
    const auto bound = std::chrono::duration_cast<std::chrono::nanoseconds>(kHaltBound);
    timespec timeout{static_cast<time_t>(bound.count() / 1000000000),
                     static_cast<long>(bound.count() % 1000000000)};
    if (::ppoll(nullptr, 0, &timeout, &outside) == 0) ++lost_kicks_;
    return -EINTR;
  }

  const uint32_t id_;
  mutable std::vector<uint64_t> storage_;  // the mapping, 8-byte aligned as the mmap is
  std::vector<Step> script_;
  const size_t request_step_;
  size_t next_ = 0;
  bool requested_ = false;
  std::atomic<int> entries_{0};
  std::atomic<int> entries_after_request_{0};
  std::atomic<int> lost_kicks_{0};
};

// `out %al, $port`, with KVM's data page right after struct kvm_run's page.
ScriptedVcpu::Step out(uint16_t port, uint8_t value) {
  return [port, value](kvm_run& run, uint8_t* mapping) {
    run.exit_reason = KVM_EXIT_IO;
    run.io.direction = KVM_EXIT_IO_OUT;
    run.io.size = 1;
    run.io.port = port;
    run.io.count = 1;
    run.io.data_offset = kPage;
    mapping[kPage] = value;
  };
}

// An MMIO read nobody claims: a cheap exit that only takes time.
ScriptedVcpu::Step mmio_read() {
  return [](kvm_run& run, uint8_t*) {
    run.exit_reason = KVM_EXIT_MMIO;
    run.mmio.phys_addr = 0xfee00000;
    run.mmio.len = 4;
    run.mmio.is_write = 0;
  };
}

ScriptedVcpu::Step exit_reason(uint32_t reason) {
  return [reason](kvm_run& run, uint8_t*) { run.exit_reason = reason; };
}

// The parts of a machine around its vCPU threads: the gate, the latch that closes it, the platform
// devices the guest writes to, and what the machine's loop thread does once the latch is set.
class Rig {
 public:
  Rig() {
    pio_.insert(devices::DebugExit::kPortBase, devices::DebugExit::kPortCount,
                std::make_shared<devices::DebugExit>(latch_));
    pio_.insert(devices::I8042::kPortBase, devices::I8042::kPortCount,
                std::make_shared<devices::I8042>(latch_, nullptr));
  }
  ~Rig() {
    latch_.fail("test over");
    stop_and_join();
  }

  ScriptedVcpu& add(std::unique_ptr<ScriptedVcpu> vcpu) {
    vcpus_.push_back(std::move(vcpu));
    exits_.push_back(std::make_unique<VcpuExitCounts>());
    threads_.push_back(std::make_unique<VcpuThread>(*vcpus_.back(), pio_, mmio_, latch_, gate_,
                                                    *exits_.back(), /*seccomp=*/false));
    return *vcpus_.back();
  }
  void start() {
    for (auto& thread : threads_) thread->start();
  }
  // The machine's loop thread: wait for the latch's fd, then stop and join every vCPU thread.
  // Returns false if the latch was not set within `bound`.
  bool wait_then_stop(milliseconds bound) {
    pollfd fd{latch_.fd(), POLLIN, 0};
    if (::poll(&fd, 1, static_cast<int>(bound.count())) != 1) return false;
    stop_and_join();
    return true;
  }
  // Machine::pause, then resume; false once the gate is closed.
  bool pause_and_resume_once() {
    if (!gate_.request()) return false;
    for (auto& thread : threads_) thread->kick();
    if (!gate_.wait_parked(threads_.size())) return false;
    gate_.release();
    return true;
  }
  void pause_and_resume_until_closed() {
    while (pause_and_resume_once()) {
    }
  }
  ExitLatch& latch() { return latch_; }
  const VcpuExitCounts& exits(size_t vcpu) const { return *exits_.at(vcpu); }

 private:
  void stop_and_join() {
    for (auto& thread : threads_) thread->stop();
    for (auto& thread : threads_) thread->join();
  }

  PauseGate gate_;
  ExitLatch latch_{[this] { gate_.close(); }};
  devices::Bus pio_{"pio"};
  devices::Bus mmio_{"mmio"};
  std::vector<std::unique_ptr<ScriptedVcpu>> vcpus_;
  std::vector<std::unique_ptr<VcpuExitCounts>> exits_;
  std::vector<std::unique_ptr<VcpuThread>> threads_;
};

// Issue 11, item 5: a guest that writes the debug-exit port, pulses the i8042 reset and halts,
// on several vCPUs at once, so the two requests of each come back to back from several threads
// while the loop thread stops them, and (in every other round) while another thread pauses and
// resumes them; other vCPUs just halt. Each round must end: no vCPU left halted without its
// kick, nothing run after a vCPU's own debug-exit write, the debug-exit status recorded.
TEST(VcpuThread, DebugExitThenResetThenHaltFromSeveralVcpusAlwaysStops) {
  constexpr int kRounds = 200;
  constexpr int kVcpus = 3;
  constexpr int kBystanders = 2;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Rig rig;
    std::vector<ScriptedVcpu*> vcpus;
    for (int i = 0; i < kVcpus; ++i) {
      // A few cheap exits first, different per vCPU and round, so the requests interleave.
      std::vector<ScriptedVcpu::Step> script((round + 3 * i) % 7, mmio_read());
      const size_t request_step = script.size();
      script.push_back(out(devices::DebugExit::kPortBase, static_cast<uint8_t>(10 + i)));
      script.push_back(out(devices::I8042::kPortBase + 4, 0xfe));  // pulse the reset line
      vcpus.push_back(&rig.add(std::make_unique<ScriptedVcpu>(i, std::move(script), request_step)));
    }
    // And vCPUs that only halt, after a few exits: only the kick brings them back.
    for (int i = kVcpus; i < kVcpus + kBystanders; ++i) {
      vcpus.push_back(&rig.add(std::make_unique<ScriptedVcpu>(
          i, std::vector<ScriptedVcpu::Step>((round + i) % 5, mmio_read()))));
    }
    rig.start();
    std::thread pauser;
    if (round % 2 == 1) pauser = std::thread([&rig] { rig.pause_and_resume_until_closed(); });
    ASSERT_TRUE(rig.wait_then_stop(milliseconds(10000))) << "no vCPU's request reached the latch";
    if (pauser.joinable()) pauser.join();

    const auto exit = rig.latch().result();
    ASSERT_TRUE(exit.has_value());
    EXPECT_EQ(exit->reason, MachineExit::Reason::kDebugExit) << exit->describe();
    EXPECT_GE(exit->debug_code, 10);
    EXPECT_LT(exit->debug_code, 10 + kVcpus);
    for (const ScriptedVcpu* vcpu : vcpus) {
      EXPECT_EQ(vcpu->lost_kicks(), 0) << "vCPU " << vcpu->id() << " halted and was never kicked";
      EXPECT_EQ(vcpu->entries_after_request(), 0)
          << "vCPU " << vcpu->id() << " ran the guest again after its debug-exit write";
    }
    if (HasFailure()) return;
  }
}

// Pausing kicks halted vCPUs out of KVM_RUN, resuming sends them back in, over and over, then a
// stop: every kick must arrive, including one that lands while a vCPU is on its way in (which
// only immediate_exit reports).
TEST(VcpuThread, PausingAndResumingHaltedVcpusNeverLosesAKick) {
  constexpr int kCycles = 300;
  Rig rig;
  std::vector<ScriptedVcpu*> vcpus;
  for (uint32_t i = 0; i < 4; ++i) {
    vcpus.push_back(&rig.add(std::make_unique<ScriptedVcpu>(i, std::vector<ScriptedVcpu::Step>{})));
  }
  rig.start();
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    ASSERT_TRUE(rig.pause_and_resume_once());
    // Long enough for the vCPUs to leave the gate and be on their way back into the guest.
    const auto until = Clock::now() + std::chrono::microseconds(cycle % 8 * 15);
    while (Clock::now() < until) {
    }
  }
  MachineExit stopped;
  stopped.reason = MachineExit::Reason::kStopped;
  rig.latch().set(stopped);
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(1000)));
  for (const ScriptedVcpu* vcpu : vcpus) {
    EXPECT_EQ(vcpu->lost_kicks(), 0) << "vCPU " << vcpu->id() << " slept through a kick";
  }
}

// The kick gets through even when the thread that started the machine blocks every signal (a
// library user's worker thread may): the vCPU threads inherit that mask.
TEST(VcpuThread, AKickReachesAHaltedVcpuStartedFromAThreadThatBlocksSignals) {
  Rig rig;
  ScriptedVcpu& vcpu =
      rig.add(std::make_unique<ScriptedVcpu>(0, std::vector<ScriptedVcpu::Step>{}));
  std::thread starter([&rig] {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
    rig.start();
  });
  starter.join();
  // Let it reach the halt, then stop it as the loop thread would.
  const auto deadline = Clock::now() + milliseconds(5000);
  while (vcpu.entries() == 0 && Clock::now() < deadline) std::this_thread::yield();
  std::this_thread::sleep_for(milliseconds(20));
  MachineExit stopped;
  stopped.reason = MachineExit::Reason::kStopped;
  rig.latch().set(stopped);
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(1000)));
  EXPECT_EQ(vcpu.lost_kicks(), 0) << "the halted vCPU slept through its kick";
}

// Once the latch is set by someone else (the timeout, a stop, another vCPU), a vCPU that comes
// back from an exit does not enter the guest again, even without being kicked.
TEST(VcpuThread, AVcpuEntersTheGuestNoMoreOnceTheLatchIsSet) {
  Rig rig;
  ScriptedVcpu& vcpu = rig.add(
      std::make_unique<ScriptedVcpu>(0, std::vector<ScriptedVcpu::Step>(100000, mmio_read())));
  MachineExit timeout;
  timeout.reason = MachineExit::Reason::kTimeout;
  rig.latch().set(timeout);
  rig.start();
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(vcpu.entries(), 0);
}

TEST(VcpuThread, CountsItsExitsByReason) {
  Rig rig;
  rig.add(std::make_unique<ScriptedVcpu>(
      0,
      std::vector<ScriptedVcpu::Step>{mmio_read(), mmio_read(), exit_reason(KVM_EXIT_INTR),
                                      out(devices::DebugExit::kPortBase, 7)},
      3));
  rig.start();
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(10000)));
  const std::map<std::string, uint64_t> exits = rig.exits(0).snapshot();
  EXPECT_EQ(exits.at("mmio"), 2u);
  EXPECT_EQ(exits.at("io"), 1u);
  EXPECT_GE(exits.at("intr"), 1u);  // and the stop's kick, if it came while the vCPU ran
}

TEST(VcpuThread, AnExitItCannotDecodeFailsTheMachineNamingTheVcpu) {
  Rig rig;
  rig.add(std::make_unique<ScriptedVcpu>(
      3, std::vector<ScriptedVcpu::Step>{mmio_read(), exit_reason(0xdead), mmio_read()}));
  rig.start();
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(10000)));
  const auto exit = rig.latch().result();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->reason, MachineExit::Reason::kError);
  EXPECT_THAT(exit->message, HasSubstr("vCPU 3: unexpected KVM exit 57005"));
}

TEST(VcpuThread, AnEmulationFailureSaysWhereTheGuestWas) {
  Rig rig;
  rig.add(
      std::make_unique<ScriptedVcpu>(0, std::vector<ScriptedVcpu::Step>{[](kvm_run& run, uint8_t*) {
                                       run.exit_reason = KVM_EXIT_INTERNAL_ERROR;
                                       run.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
                                     }}));
  rig.start();
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(10000)));
  const auto exit = rig.latch().result();
  ASSERT_TRUE(exit.has_value());
  EXPECT_THAT(exit->message, HasSubstr("instruction emulation failed at rip 0x1234"));
}

TEST(VcpuThread, ATripleFaultIsAReboot) {
  // The warning with where the vCPU was, captured from the default logger (restored after).
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(8);
  sink->set_pattern("%l: %v");
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  Rig rig;
  ScriptedVcpu& vcpu = rig.add(std::make_unique<ScriptedVcpu>(
      0, std::vector<ScriptedVcpu::Step>{exit_reason(KVM_EXIT_SHUTDOWN), mmio_read()}, 0));
  rig.start();
  ASSERT_TRUE(rig.wait_then_stop(milliseconds(10000)));
  const auto exit = rig.latch().result();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->reason, MachineExit::Reason::kReboot);
  EXPECT_EQ(vcpu.entries_after_request(), 0);
  spdlog::set_default_logger(previous);
  const std::vector<std::string> lines = sink->last_formatted();
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "warning: vCPU 0: triple fault (the guest is reset) at rip 0x1234, cr0 0x0, "
                      "cr3 0x0, cr4 0x0\n"),
            lines.end())
      << fmt::format("{}", fmt::join(lines, ""));
}

}  // namespace
}  // namespace vmm
