#pragma once

#include <sys/ioctl.h>

#include <cerrno>

#include "vmm/util/error.hpp"

namespace vmm::kvm {

// Every KVM ioctl goes through here: retried on EINTR, and a failure throws naming the call.
template <typename Arg>
int checked_ioctl(int fd, unsigned long request, const char* name, Arg arg) {
  int ret;
  do {
    ret = ::ioctl(fd, request, arg);
  } while (ret < 0 && errno == EINTR);
  if (ret < 0) throw_errno(name);
  return ret;
}

#define VMM_IOCTL(fd, request, arg) ::vmm::kvm::checked_ioctl((fd), (request), #request, (arg))

}  // namespace vmm::kvm
