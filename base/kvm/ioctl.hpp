#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <algorithm>
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
struct MsrListHeader {
  uint32_t nmsrs;
};
// kvm_xsave without its flexible tail: the legacy 4 KiB area, after which KVM_GET_XSAVE2 and
// KVM_SET_XSAVE go on for as many bytes as KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) says.
struct XsaveRegion {
  uint32_t region[1024];
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4);
static_assert(sizeof(XsaveRegion) == 4096);
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kGetCpuid2 = _IOWR(KVMIO, 0x91, CpuidHeader);
inline constexpr unsigned long kGetXsave = _IOR(KVMIO, 0xa4, XsaveRegion);
inline constexpr unsigned long kSetXsave = _IOW(KVMIO, 0xa5, XsaveRegion);
inline constexpr unsigned long kGetXsave2 = _IOR(KVMIO, 0xcf, XsaveRegion);

// KVM refuses a KVM_GET_MSRS or KVM_SET_MSRS of more entries than this (MAX_IO_MSRS - 1).
inline constexpr size_t kMaxMsrsPerIoctl = 255;

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

// The first `count` entries after the header in a buffer a KVM ioctl filled (fewer if it holds
// fewer).
template <typename Header, typename Entry>
std::vector<Entry> flex_entries(const std::vector<uint64_t>& buffer, size_t count) {
  const size_t room = (buffer.size() * sizeof(uint64_t) - sizeof(Header)) / sizeof(Entry);
  std::vector<Entry> entries(std::min(count, room));
  if (!entries.empty()) {
    std::memcpy(entries.data(), reinterpret_cast<const uint8_t*>(buffer.data()) + sizeof(Header),
                entries.size() * sizeof(Entry));
  }
  return entries;
}

// KVM_CHECK_EXTENSION on `fd` (/dev/kvm or a VM): the capability's value, 0 when it is missing.
int check_extension(int fd, long capability);

// The CPUID entries a KVM_GET_SUPPORTED_CPUID or KVM_GET_CPUID2 `request` returns, in a buffer
// grown until they fit.
std::vector<kvm_cpuid_entry2> read_cpuid(int fd, unsigned long request, const char* name);

#define VMM_IOCTL(fd, request, arg) ::vmm::kvm::checked_ioctl((fd), (request), #request, (arg))

}  // namespace vmm::kvm
