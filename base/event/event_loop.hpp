#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "base/util/event_fd.hpp"
#include "base/util/thread_annotations.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm {

// An epoll loop with one handler per fd. Handlers run on the loop's thread; they may add, modify
// or remove registrations (including their own) and call stop(). Other threads hand work to the
// loop's thread with post(); everything else is for the loop's thread only. Each registration
// carries a token of its own in epoll's data, never reused: an event that epoll reported for a
// registration that a handler removed earlier in the same round is dropped, even if its fd number
// was reused since.
class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;

  EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  void add(int fd, uint32_t events, Handler handler);
  void modify(int fd, uint32_t events);
  void remove(int fd);

  // Dispatches events until stop() is called.
  void run();
  // Waits at most `timeout_ms` (-1: forever) and dispatches what is ready; returns false once
  // stopped.
  bool run_once(int timeout_ms);
  // Thread-safe; the loop returns after the handlers of the current round.
  void stop();
  // Thread-safe: runs `work` on the loop's thread in its next round, in the order posted (a vCPU
  // thread hands a device's activation or reset over this way). Work posted to a loop that never
  // runs again is destroyed with it, not run.
  void post(std::function<void()> work) VMM_EXCLUDES(posted_mutex_);
  // How many handler calls the loop has made: lets a test see that an idle round did nothing
  // (a handler that keeps its fd ready would be called every round).
  uint64_t dispatched() const { return dispatched_; }

  // The longest a handler call took, and whose fd it was (posted work runs in the handler of the
  // loop's own wake-up eventfd): a handler that keeps the loop busy delays every other device.
  struct LongestHandler {
    std::chrono::nanoseconds duration{0};
    int fd = -1;  // -1 before any handler ran
  };
  // Thread-safe.
  LongestHandler longest_handler() const VMM_EXCLUDES(longest_mutex_);

 private:
  struct Registration {
    int fd;
    std::shared_ptr<Handler> handler;  // shared: kept alive while a handler removes itself
  };

  void run_posted() VMM_EXCLUDES(posted_mutex_);
  // Keeps the longest handler call (the loop's thread).
  void record_handler_time(std::chrono::nanoseconds duration, int fd) VMM_EXCLUDES(longest_mutex_);

  UniqueFd epoll_;
  EventFd wakeup_;
  std::atomic<bool> stopped_{false};
  uint64_t dispatched_ = 0;
  Mutex posted_mutex_;
  std::vector<std::function<void()>> posted_ VMM_GUARDED_BY(posted_mutex_);
  uint64_t next_token_ = 0;
  std::map<int, uint64_t> token_of_fd_;
  std::map<uint64_t, Registration> handlers_;  // by token
  // The loop's thread compares with its own copy; the mutex is taken only for a new maximum.
  std::chrono::nanoseconds longest_seen_{0};
  mutable Mutex longest_mutex_;
  LongestHandler longest_ VMM_GUARDED_BY(longest_mutex_);
};

}  // namespace vmm
