#include "devices/backends/thread_pool_io.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <string>

#include "base/util/error.hpp"

namespace vmm::devices {

ThreadPoolIo::ThreadPoolIo(int fd, unsigned depth, ThreadStartHook on_worker_start)
    : fd_(fd), depth_(depth) {
  const unsigned threads = std::clamp(depth, 1u, kMaxThreads);
  workers_.reserve(threads);
  try {
    for (unsigned i = 0; i < threads; ++i) {
      workers_.emplace_back([this, &on_worker_start] { run_worker(on_worker_start); });
    }
  } catch (...) {
    stop_workers();
    throw;
  }
  std::string error;
  {
    MutexLock lock(mutex_);
    while (workers_ready_count_ != threads) lock.wait(workers_ready_);
    error = worker_start_error_;
  }
  if (!error.empty()) {
    stop_workers();
    fail("thread pool I/O: starting a worker: {}", error);
  }
}

ThreadPoolIo::~ThreadPoolIo() {
  wait_all([](const IoCompletion&) {});
  stop_workers();
}

void ThreadPoolIo::stop_workers() {
  {
    MutexLock lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPoolIo::submit(IoRequest request) {
  if (in_flight_ >= depth_) fail("thread pool I/O: more than {} requests in flight", depth_);
  staged_.push_back(std::move(request));
  ++in_flight_;
}

void ThreadPoolIo::flush_submissions() {
  if (staged_.empty()) return;
  {
    MutexLock lock(mutex_);
    for (IoRequest& request : staged_) pending_.push_back(std::move(request));
  }
  staged_.clear();
  work_ready_.notify_all();
}

void ThreadPoolIo::cancel_all() {
  {
    MutexLock lock(mutex_);
    // What no worker has taken yet completes at once; a running preadv can't be interrupted.
    for (IoRequest& request : staged_) finished_.push_back({request.cookie, -ECANCELED});
    for (IoRequest& request : pending_) finished_.push_back({request.cookie, -ECANCELED});
    pending_.clear();
    if (!finished_.empty()) completions_.signal();
  }
  staged_.clear();
  work_done_.notify_one();
}

void ThreadPoolIo::run_worker(const ThreadStartHook& on_worker_start) {
  std::string error;
  if (on_worker_start) {
    try {
      on_worker_start();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  {
    MutexLock lock(mutex_);
    if (!error.empty() && worker_start_error_.empty()) worker_start_error_ = error;
    ++workers_ready_count_;
  }
  workers_ready_.notify_one();
  for (;;) {
    IoRequest request;
    {
      MutexLock lock(mutex_);
      while (!stopping_ && pending_.empty()) lock.wait(work_ready_);
      if (pending_.empty()) return;
      request = std::move(pending_.front());
      pending_.pop_front();
    }
    const int64_t result = execute_blocking(fd_, request);
    MutexLock lock(mutex_);
    finished_.push_back({request.cookie, result});
    // Signalled under the lock: once wait_all() has taken the last completion, no signal for it
    // is still on its way, so wait_all() can leave the eventfd clear.
    completions_.signal();
    work_done_.notify_one();
  }
}

int64_t execute_blocking(int engine_fd, const IoRequest& request) {
  const int fd = request.fd >= 0 ? request.fd : engine_fd;
  const auto vecs = static_cast<int>(request.buffers.size());
  const auto offset = static_cast<off_t>(request.offset);
  const auto length = static_cast<off_t>(request.length);
  ssize_t ret = 0;
  do {
    switch (request.op) {
      case IoRequest::Op::kRead: ret = ::preadv(fd, request.buffers.data(), vecs, offset); break;
      case IoRequest::Op::kWrite: ret = ::pwritev(fd, request.buffers.data(), vecs, offset); break;
      case IoRequest::Op::kFlush: ret = ::fdatasync(fd); break;
      case IoRequest::Op::kPunchHole:
        ret = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
        break;
      case IoRequest::Op::kZeroRange:
        ret = ::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
        break;
      case IoRequest::Op::kNop: ret = 0; break;
    }
  } while (ret < 0 && errno == EINTR);
  return ret < 0 ? -errno : ret;
}

size_t ThreadPoolIo::drain(const std::function<void(const IoCompletion&)>& on_complete) {
  size_t count = 0;
  for (;;) {
    IoCompletion completion{};
    {
      MutexLock lock(mutex_);
      if (finished_.empty()) return count;
      completion = finished_.front();
      finished_.pop_front();
    }
    --in_flight_;
    ++count;
    on_complete(completion);
  }
}

size_t ThreadPoolIo::reap(const std::function<void(const IoCompletion&)>& on_complete) {
  // Reset the eventfd before looking, so a completion queued after the drain signals again.
  completions_.consume();
  return drain(on_complete);
}

void ThreadPoolIo::wait_all(const std::function<void(const IoCompletion&)>& on_complete) {
  flush_submissions();
  while (in_flight_ > 0) {
    {
      MutexLock lock(mutex_);
      while (finished_.empty()) lock.wait(work_done_);
    }
    drain(on_complete);
  }
  completions_.consume();
}

}  // namespace vmm::devices
