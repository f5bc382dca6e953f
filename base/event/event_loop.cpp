#include "base/event/event_loop.hpp"

#include <sys/epoll.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <memory>
#include <utility>
#include <vector>

#include "base/util/error.hpp"

namespace vmm {

EventLoop::EventLoop() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_) throw_errno("epoll_create1");
  add(wakeup_.fd(), EPOLLIN, [this](uint32_t) {
    wakeup_.consume();
    run_posted();
  });
}

void EventLoop::add(int fd, uint32_t events, Handler handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = next_token_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    throw_errno(fmt::format("epoll_ctl(ADD, fd {})", fd));
  }
  token_of_fd_[fd] = next_token_;
  handlers_[next_token_++] = Registration{fd, std::make_shared<Handler>(std::move(handler))};
}

void EventLoop::modify(int fd, uint32_t events) {
  const auto it = token_of_fd_.find(fd);
  if (it == token_of_fd_.end()) throw Error(fmt::format("epoll_ctl(MOD, fd {}): not added", fd));
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    throw_errno(fmt::format("epoll_ctl(MOD, fd {})", fd));
  }
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  const auto it = token_of_fd_.find(fd);
  if (it == token_of_fd_.end()) return;
  handlers_.erase(it->second);
  token_of_fd_.erase(it);
}

bool EventLoop::run_once(int timeout_ms) {
  if (stopped_.load()) return false;
  std::array<epoll_event, 16> events{};
  const int n =
      ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return true;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    // By value: epoll_event is packed on x86-64, so its u64 is misaligned for a reference.
    const uint64_t token = events[static_cast<size_t>(i)].data.u64;
    const uint32_t ready = events[static_cast<size_t>(i)].events;
    auto it = handlers_.find(token);
    if (it == handlers_.end()) continue;           // removed by an earlier handler this round
    const Registration registration = it->second;  // alive if the handler removes itself
    ++dispatched_;
    // steady_clock is the vDSO's clock_gettime: two calls cost well under a microsecond.
    const auto start = std::chrono::steady_clock::now();
    (*registration.handler)(ready);
    record_handler_time(std::chrono::steady_clock::now() - start, registration.fd);
  }
  return !stopped_.load();
}

void EventLoop::record_handler_time(std::chrono::nanoseconds duration, int fd) {
  if (duration <= longest_seen_) return;
  longest_seen_ = duration;
  MutexLock lock(longest_mutex_);
  longest_ = {duration, fd};
}

EventLoop::LongestHandler EventLoop::longest_handler() const {
  MutexLock lock(longest_mutex_);
  return longest_;
}

void EventLoop::run() {
  while (run_once(-1)) {
  }
}

void EventLoop::post(std::function<void()> work) {
  {
    MutexLock lock(posted_mutex_);
    posted_.push_back(std::move(work));
  }
  wakeup_.signal();
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> work;
  {
    MutexLock lock(posted_mutex_);
    work.swap(posted_);
  }
  // Outside the lock: a work item may post more (it then runs next round, after epoll's events).
  for (auto& item : work) {
    ++dispatched_;
    item();
  }
}

void EventLoop::stop() {
  stopped_.store(true);
  wakeup_.signal();
}

}  // namespace vmm
