#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

// Clang's thread-safety analysis (-Wthread-safety, on in clang builds): a member marked
// VMM_GUARDED_BY(mutex_) may only be touched with mutex_ held, and the compiler checks it. GCC
// ignores the annotations. std::mutex carries none in libstdc++, hence the small wrappers below.
#if defined(__clang__)
#define VMM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define VMM_THREAD_ANNOTATION(x)
#endif

#define VMM_CAPABILITY(x) VMM_THREAD_ANNOTATION(capability(x))
#define VMM_SCOPED_CAPABILITY VMM_THREAD_ANNOTATION(scoped_lockable)
#define VMM_GUARDED_BY(x) VMM_THREAD_ANNOTATION(guarded_by(x))
#define VMM_PT_GUARDED_BY(x) VMM_THREAD_ANNOTATION(pt_guarded_by(x))
#define VMM_REQUIRES(...) VMM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define VMM_EXCLUDES(...) VMM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define VMM_ACQUIRE(...) VMM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define VMM_RELEASE(...) VMM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define VMM_NO_THREAD_SAFETY_ANALYSIS VMM_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace vmm {

// A std::mutex the analysis knows about.
class VMM_CAPABILITY("mutex") Mutex {
 public:
  void lock() VMM_ACQUIRE() { mutex_.lock(); }
  void unlock() VMM_RELEASE() { mutex_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mutex_;
};

// Holds a Mutex for its scope; wait() releases it while blocked, as a condition variable does.
class VMM_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mutex) VMM_ACQUIRE(mutex) : lock_(mutex.mutex_) {}
  ~MutexLock() VMM_RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Releases the mutex while blocked on `cv`, and holds it again when it returns: callers loop
  // on their condition, `while (!ready_) lock.wait(cv);`, which the analysis can check (a
  // predicate lambda would hide the guarded reads from it).
  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  // As wait(), giving up at `deadline`; false if it was reached.
  template <typename Clock, typename Duration>
  bool wait_until(std::condition_variable& cv,
                  const std::chrono::time_point<Clock, Duration>& deadline) {
    return cv.wait_until(lock_, deadline) == std::cv_status::no_timeout;
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace vmm
