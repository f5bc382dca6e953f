#include "vmm/machine/pause_gate.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace vmm {
namespace {

// Participants that pass the gate in a loop, counting their rounds, until it closes.
class Participants {
 public:
  Participants(PauseGate& gate, int count) {
    for (int i = 0; i < count; ++i) {
      threads_.emplace_back([this, &gate] {
        while (gate.checkpoint()) {
          if (done_) return;
          ++rounds_;
          std::this_thread::yield();
        }
      });
    }
  }
  ~Participants() {
    done_ = true;
    for (auto& thread : threads_) thread.join();
  }
  uint64_t rounds() const { return rounds_.load(); }

 private:
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> rounds_{0};
  std::vector<std::thread> threads_;
};

TEST(PauseGate, CheckpointPassesWhenNoPauseIsRequested) {
  PauseGate gate;
  EXPECT_FALSE(gate.pause_requested());
  EXPECT_TRUE(gate.checkpoint());
}

TEST(PauseGate, ParticipantsParkUntilReleased) {
  PauseGate gate;
  Participants participants(gate, 3);
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(gate.request());
    ASSERT_TRUE(gate.wait_parked(3));
    const uint64_t parked_at = participants.rounds();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(participants.rounds(), parked_at) << "a participant ran while paused";
    gate.release();
  }
  gate.close();
}

TEST(PauseGate, CloseReleasesParkedThreadsForGood) {
  PauseGate gate;
  std::atomic<int> returned_false{0};
  std::vector<std::thread> threads;
  threads.reserve(2);
  ASSERT_TRUE(gate.request());
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&] {
      if (!gate.checkpoint()) ++returned_false;
    });
  }
  ASSERT_TRUE(gate.wait_parked(2));
  gate.close();
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(returned_false, 2);
  EXPECT_FALSE(gate.request());
  EXPECT_TRUE(gate.checkpoint());  // nothing requested: passes (the caller checks its own stop)
}

TEST(PauseGate, WaitingForParticipantsThatNeverComeEndsAtClose) {
  PauseGate gate;
  ASSERT_TRUE(gate.request());
  std::thread closer([&] { gate.close(); });
  EXPECT_FALSE(gate.wait_parked(1));
  closer.join();
}

// A vCPU waiting for the loop thread to finish a device reset counts as parked: a pause completes
// while it waits, and the vCPU does not go on while the machine is paused, even once its wait is
// over.
TEST(PauseGate, AThreadWaitingAsParkedCountsAsParkedAndStaysPausedUntilReleased) {
  PauseGate gate;
  std::atomic<bool> reset_done{false};
  std::atomic<bool> returned{false};
  std::thread vcpu([&] {
    EXPECT_TRUE(gate.wait_as_parked([&] { return reset_done.load(); }));
    returned = true;
  });
  ASSERT_TRUE(gate.request());
  ASSERT_TRUE(gate.wait_parked(1));  // would hang if the waiter did not count
  reset_done = true;
  gate.notify();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(returned.load()) << "the waiter went on while the machine was paused";
  gate.release();
  vcpu.join();
  EXPECT_TRUE(returned.load());
}

TEST(PauseGate, AWaitAsParkedEndsWhenTheGateCloses) {
  PauseGate gate;
  std::atomic<int> result{-1};
  std::thread vcpu([&] { result = gate.wait_as_parked([] { return false; }) ? 1 : 0; });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  gate.close();
  vcpu.join();
  EXPECT_EQ(result.load(), 0);
}

}  // namespace
}  // namespace vmm
