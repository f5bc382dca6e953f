#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>

#include "base/util/thread_annotations.hpp"

namespace vmm {

// Where a machine's own threads (its vCPUs and its event loop) park while it is paused.
//
// The pausing thread calls request() and then makes each participant reach a checkpoint (a vCPU
// is kicked out of KVM_RUN, the loop is woken); wait_parked() returns once `participants` of them
// sit in checkpoint(). release() lets them go. close() (the machine is stopping) releases everyone
// for good: checkpoint() then returns false at once, and wait_parked() gives up.
class PauseGate {
 public:
  // False if the gate is closed.
  bool request();
  // True once `participants` threads are parked; false if the gate closed first.
  bool wait_parked(size_t participants);
  void release();
  void close();

  // Called by a participant at a point where it holds no device state. Returns at once unless a
  // pause is requested; otherwise parks until release() (true) or close() (false).
  bool checkpoint() {
    if (!pause_requested()) return true;
    return park();
  }
  bool pause_requested() const { return requested_.load(); }

  // For a participant that waits on another one (a vCPU whose device reset the loop thread
  // finishes): it counts as parked while it waits, so a pause or a stop never waits for it.
  // Returns true once `done()` holds and no pause is requested, false if the gate closed first.
  // `done` is evaluated under the gate's lock, again after each notify().
  bool wait_as_parked(const std::function<bool()>& done);
  // Makes wait_as_parked() look at its condition again.
  void notify();

 private:
  bool park();

  Mutex mutex_;
  std::condition_variable changed_;
  // Written under mutex_; read without it by checkpoint()'s fast path.
  std::atomic<bool> requested_{false};
  bool closed_ VMM_GUARDED_BY(mutex_) = false;
  size_t parked_ VMM_GUARDED_BY(mutex_) = 0;
};

}  // namespace vmm
