#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"

namespace vmm::kvm {

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

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace vmm::kvm
