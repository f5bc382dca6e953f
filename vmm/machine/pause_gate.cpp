#include "vmm/machine/pause_gate.hpp"

namespace vmm {

bool PauseGate::request() {
  std::lock_guard lock(mutex_);
  if (closed_) return false;
  requested_.store(true);
  return true;
}

bool PauseGate::wait_parked(size_t participants) {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [&] { return closed_ || parked_ >= participants; });
  return !closed_;
}

void PauseGate::release() {
  {
    std::lock_guard lock(mutex_);
    requested_.store(false);
  }
  changed_.notify_all();
}

void PauseGate::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    requested_.store(false);
  }
  changed_.notify_all();
}

bool PauseGate::wait_as_parked(const std::function<bool()>& done) {
  std::unique_lock lock(mutex_);
  ++parked_;
  changed_.notify_all();
  changed_.wait(lock, [&] { return closed_ || (!requested_.load() && done()); });
  --parked_;
  return !closed_;
}

void PauseGate::notify() {
  // Under the lock, so a waiter between its check and its sleep can't miss it.
  std::lock_guard lock(mutex_);
  changed_.notify_all();
}

bool PauseGate::park() {
  std::unique_lock lock(mutex_);
  if (closed_) return false;
  if (!requested_.load()) return true;
  ++parked_;
  changed_.notify_all();
  changed_.wait(lock, [&] { return closed_ || !requested_.load(); });
  --parked_;
  return !closed_;
}

}  // namespace vmm
