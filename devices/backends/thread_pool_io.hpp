#pragma once

#include <condition_variable>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "base/util/event_fd.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/backends/async_io.hpp"

namespace vmm::devices {

// AsyncIo for hosts without io_uring: a few worker threads run each request with the blocking
// system call (preadv, pwritev, fdatasync, fallocate) and queue its completion.
class ThreadPoolIo final : public AsyncIo {
 public:
  static constexpr unsigned kMaxThreads = 4;

  // Starts min(depth, kMaxThreads) workers, each of which calls `on_worker_start` first; returns
  // once they all have, and throws vmm::Error if it threw on any.
  ThreadPoolIo(int fd, unsigned depth, ThreadStartHook on_worker_start = {});
  ~ThreadPoolIo() override;
  ThreadPoolIo(const ThreadPoolIo&) = delete;
  ThreadPoolIo& operator=(const ThreadPoolIo&) = delete;

  std::string name() const override { return "thread pool"; }
  void submit(IoRequest request) override;
  void flush_submissions() override;
  int completion_fd() const override { return completions_.fd(); }
  size_t reap(const std::function<void(const IoCompletion&)>& on_complete) override;
  size_t in_flight() const override { return in_flight_; }
  void cancel_all() override;
  void wait_all(const std::function<void(const IoCompletion&)>& on_complete) override;

 private:
  void run_worker(const ThreadStartHook& on_worker_start);
  void stop_workers();
  // Reports finished requests one at a time, each taken under the lock and reported without it.
  size_t drain(const std::function<void(const IoCompletion&)>& on_complete);

  const int fd_;
  const unsigned depth_;
  EventFd completions_;
  // Owner-side state: only the (serialised) caller touches these.
  std::vector<IoRequest> staged_;
  size_t in_flight_ = 0;

  // Shared with the workers.
  Mutex mutex_;
  std::condition_variable work_ready_;  // workers: pending_ has work or stopping_
  std::condition_variable work_done_;   // wait_all: finished_ has completions
  std::deque<IoRequest> pending_ VMM_GUARDED_BY(mutex_);
  std::deque<IoCompletion> finished_ VMM_GUARDED_BY(mutex_);
  bool stopping_ VMM_GUARDED_BY(mutex_) = false;
  std::condition_variable workers_ready_;  // the constructor: every worker ran its start hook
  unsigned workers_ready_count_ VMM_GUARDED_BY(mutex_) = 0;
  // The first start hook's failure.
  std::string worker_start_error_ VMM_GUARDED_BY(mutex_);
  std::vector<std::thread> workers_;  // last: started after everything they use exists
};

}  // namespace vmm::devices
