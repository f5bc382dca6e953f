#include "base/kvm/kvm.hpp"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/kvm/ioctl.hpp"
#include "base/util/error.hpp"

namespace vmm::kvm {

Kvm Kvm::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT) {
      fail("{}: No such file or directory (KVM is not available: load kvm-intel or kvm-amd)", path);
    }
    if (err == EACCES || err == EPERM) {
      fail("{}: Permission denied (add your user to the group that owns it, usually 'kvm')", path);
    }
    throw Error(errno_message(path, err));
  }
  const int version = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) {
    fail("{}: not a KVM device (KVM_GET_API_VERSION: {})", path, std::strerror(errno));
  }
  if (version != KVM_API_VERSION) {
    fail("{}: unsupported KVM API version {} (need {})", path, version, KVM_API_VERSION);
  }
  return Kvm(std::move(fd));
}

int Kvm::check_extension(long capability) const {
  const int ret = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return ret < 0 ? 0 : ret;
}

void Kvm::require_extension(long capability, const char* name) const {
  if (check_extension(capability) <= 0) fail("/dev/kvm lacks a required capability: {}", name);
}

int Kvm::max_vcpus() const {
  int max = check_extension(KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = check_extension(KVM_CAP_NR_VCPUS);
  return max > 0 ? max : 4;
}

size_t Kvm::vcpu_mmap_size() const {
  return static_cast<size_t>(VMM_IOCTL(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0));
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
  for (uint32_t count = 128; count <= 4096; count *= 2) {
    std::vector<kvm_cpuid_entry2> entries(count);
    auto buffer = flex_buffer(CpuidHeader{count, 0}, std::span<const kvm_cpuid_entry2>(entries));
    if (::ioctl(fd_.get(), kGetSupportedCpuid, buffer.data()) == 0) {
      CpuidHeader header;
      std::memcpy(&header, buffer.data(), sizeof(header));
      entries.resize(std::min(header.nent, count));
      std::memcpy(entries.data(), reinterpret_cast<uint8_t*>(buffer.data()) + sizeof(header),
                  entries.size() * sizeof(kvm_cpuid_entry2));
      return entries;
    }
    if (errno != E2BIG) throw_errno("KVM_GET_SUPPORTED_CPUID");
  }
  fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

}  // namespace vmm::kvm
