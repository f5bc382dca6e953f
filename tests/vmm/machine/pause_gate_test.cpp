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

}  // namespace
}  // namespace vmm
