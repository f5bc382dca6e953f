#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/util/error.hpp"

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

// <linux/kvm.h> declares its variable-length structs (kvm_cpuid2, kvm_msrs) with
// __DECLARE_FLEX_ARRAY, which in C++ adds an empty member: sizeof and the offset of the array
// differ from C, and so do the ioctl numbers computed from them (KVM answers EINVAL). vmm
// builds these arguments from C-layout headers instead.
struct CpuidHeader {
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {
  uint32_t nmsrs;
  uint32_t pad;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8);
inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);

// A C-layout header followed by `entries`, 8-byte aligned, as KVM reads it.
template <typename Header, typename Entry>
std::vector<uint64_t> flex_buffer(const Header& header, std::span<const Entry> entries) {
  const size_t bytes = sizeof(Header) + entries.size_bytes();
  std::vector<uint64_t> buffer((bytes + 7) / 8, 0);
  std::memcpy(buffer.data(), &header, sizeof(Header));
  if (!entries.empty()) {
    std::memcpy(reinterpret_cast<uint8_t*>(buffer.data()) + sizeof(Header), entries.data(),
                entries.size_bytes());
  }
  return buffer;
}

#define VMM_IOCTL(fd, request, arg) ::vmm::kvm::checked_ioctl((fd), (request), #request, (arg))

}  // namespace vmm::kvm
