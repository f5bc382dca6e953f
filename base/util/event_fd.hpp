#pragma once

#include <cstdint>

#include "base/util/unique_fd.hpp"

namespace vmm {

// A non-blocking eventfd: a counter one thread signals and another waits on (epoll, irqfd,
// ioeventfd).
class EventFd {
 public:
  EventFd();
  int fd() const { return fd_.get(); }
  void signal(uint64_t value = 1) const;
  // Returns the accumulated count and resets it; 0 if nothing was signalled.
  uint64_t consume() const;

 private:
  UniqueFd fd_;
};

}  // namespace vmm
