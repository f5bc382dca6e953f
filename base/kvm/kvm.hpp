#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"

namespace vmm::kvm {

// MSRs whose saving and restoring vmm orders by hand.
inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;
inline constexpr uint32_t kMsrKvmWallClockNew = 0x4b564d00;
inline constexpr uint32_t kMsrKvmSystemTimeNew = 0x4b564d01;

// The /dev/kvm system handle.
class Kvm {
 public:
  // Opens `path`; errors say what is wrong in one line (no device, no permission, wrong API).
  static Kvm open(const std::string& path = "/dev/kvm");

  int fd() const { return fd_.get(); }
  int check_extension(long capability) const;
  // Throws naming `name` when the capability is missing.
  void require_extension(long capability, const char* name) const;
  int max_vcpus() const;
  size_t vcpu_mmap_size() const;
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;
  // The MSRs a snapshot saves: the TSC, kvmclock's and the rest of KVM_GET_MSR_INDEX_LIST. The
  // host's list never changes, so it is read once per process, at the first call: call it before
  // the threads that take snapshots confine themselves.
  const std::vector<uint32_t>& msrs_to_save() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vmm::kvm
