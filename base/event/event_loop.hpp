#pragma once

#include <atomic>
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

 private:
  void run_posted() VMM_EXCLUDES(posted_mutex_);

  UniqueFd epoll_;
  EventFd wakeup_;
  std::atomic<bool> stopped_{false};
  uint64_t dispatched_ = 0;
  Mutex posted_mutex_;
  std::vector<std::function<void()>> posted_ VMM_GUARDED_BY(posted_mutex_);
  uint64_t next_token_ = 0;
  std::map<int, uint64_t> token_of_fd_;
  std::map<uint64_t, std::shared_ptr<Handler>> handlers_;  // by token
};

}  // namespace vmm
