#include "vmm/machine/pause_gate.hpp"

namespace vmm {

bool PauseGate::request() {
  MutexLock lock(mutex_);
  if (closed_) return false;
  requested_.store(true);
  return true;
}

bool PauseGate::wait_parked(size_t participants) {
  MutexLock lock(mutex_);
  while (!closed_ && parked_ < participants) lock.wait(changed_);
  return !closed_;
}

void PauseGate::release() {
  {
    MutexLock lock(mutex_);
    requested_.store(false);
  }
  changed_.notify_all();
}

void PauseGate::close() {
  {
    MutexLock lock(mutex_);
    closed_ = true;
    requested_.store(false);
  }
  changed_.notify_all();
}

bool PauseGate::wait_as_parked(const std::function<bool()>& done) {
  MutexLock lock(mutex_);
  ++parked_;
  changed_.notify_all();
  while (!closed_ && (requested_.load() || !done())) lock.wait(changed_);
  --parked_;
  return !closed_;
}

void PauseGate::notify() {
  // Under the lock, so a waiter between its check and its sleep can't miss it.
  MutexLock lock(mutex_);
  changed_.notify_all();
}

bool PauseGate::park() {
  MutexLock lock(mutex_);
  if (closed_) return false;
  if (!requested_.load()) return true;
  ++parked_;
  changed_.notify_all();
  while (!closed_ && requested_.load()) lock.wait(changed_);
  --parked_;
  return !closed_;
}

}  // namespace vmm
