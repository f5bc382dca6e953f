#include "base/util/event_fd.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "base/util/error.hpp"

namespace vmm {

EventFd::EventFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_) throw_errno("eventfd");
}

void EventFd::signal(uint64_t value) const {
  // Can only fail with EAGAIN when the counter would overflow, and then the reader is already
  // woken: nothing is lost.
  while (::write(fd_.get(), &value, sizeof(value)) < 0 && errno == EINTR) {
  }
}

uint64_t EventFd::consume() const {
  uint64_t value = 0;
  while (::read(fd_.get(), &value, sizeof(value)) < 0) {
    if (errno != EINTR) return 0;
  }
  return value;
}

}  // namespace vmm
