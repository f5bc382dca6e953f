#pragma once

#include <sys/epoll.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "base/event/event_loop.hpp"

namespace vmm::devices::virtio {

// The fds a virtio device watches on its event loop from activation to reset (its queues' notify
// eventfds, its resume eventfd, its backend's or completions' fd), registered and removed together.
// On the loop's thread, like the device.
class WatchedFds {
 public:
  explicit WatchedFds(EventLoop& loop) : loop_(loop) {}
  WatchedFds(const WatchedFds&) = delete;
  WatchedFds& operator=(const WatchedFds&) = delete;
  ~WatchedFds() { clear(); }

  // Watches each queue's notify eventfd (Activation::notify_fds): a notification empties its
  // count and calls `on_notify` with the queue's index.
  void add_notify_fds(const std::vector<int>& fds, const std::function<void(uint16_t)>& on_notify) {
    for (size_t queue = 0; queue < fds.size(); ++queue) {
      const int fd = fds[queue];
      add(fd, EPOLLIN, [fd, queue, on_notify](uint32_t) {
        uint64_t count;
        [[maybe_unused]] const ssize_t n = ::read(fd, &count, sizeof(count));
        on_notify(static_cast<uint16_t>(queue));
      });
    }
  }
  void add(int fd, uint32_t events, EventLoop::Handler handler) {
    loop_.add(fd, events, std::move(handler));
    fds_.push_back(fd);
  }
  // Stops watching them all.
  void clear() {
    for (int fd : fds_) loop_.remove(fd);
    fds_.clear();
  }

 private:
  EventLoop& loop_;
  std::vector<int> fds_;
};

}  // namespace vmm::devices::virtio
