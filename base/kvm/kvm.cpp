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
  return kvm::check_extension(fd_.get(), capability);
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
  return read_cpuid(fd_.get(), kGetSupportedCpuid, "KVM_GET_SUPPORTED_CPUID");
}

namespace {

std::vector<uint32_t> read_msr_index_list(int fd) {
  // A first call with no room answers E2BIG and how many there are; the list can't change after.
  MsrListHeader header{0};
  if (::ioctl(fd, kGetMsrIndexList, &header) == 0) return {};
  if (errno != E2BIG) throw_errno("KVM_GET_MSR_INDEX_LIST");
  const std::vector<uint32_t> room(header.nmsrs);
  auto buffer = flex_buffer(header, std::span<const uint32_t>(room));
  checked_ioctl(fd, kGetMsrIndexList, "KVM_GET_MSR_INDEX_LIST", buffer.data());
  std::memcpy(&header, buffer.data(), sizeof(header));
  return flex_entries<MsrListHeader, uint32_t>(buffer, header.nmsrs);
}

}  // namespace

const std::vector<uint32_t>& Kvm::msrs_to_save() const {
  static const std::vector<uint32_t> indices = [fd = fd_.get()] {
    // The TSC and kvmclock's MSRs lead, whether or not the host lists them: a guest's time hangs on
    // them.
    std::vector<uint32_t> list{kMsrIa32Tsc, kMsrKvmSystemTimeNew, kMsrKvmWallClockNew};
    for (const uint32_t index : read_msr_index_list(fd)) {
      if (std::find(list.begin(), list.end(), index) == list.end()) list.push_back(index);
    }
    return list;
  }();
  return indices;
}

}  // namespace vmm::kvm
