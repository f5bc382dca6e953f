#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "base/kvm/vm.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::kvm {

// One vCPU fd and its shared kvm_run page.
class Vcpu {
 public:
  Vcpu(const Vm& vm, uint32_t id, size_t mmap_size);
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;
  Vcpu(Vcpu&& other) noexcept;
  ~Vcpu();

  uint32_t id() const { return id_; }
  int fd() const { return fd_.get(); }
  kvm_run* run_state() const { return run_; }

  // KVM_RUN once. Returns 0 on a normal exit, or -errno for EINTR/EAGAIN (a kick); throws on any
  // other failure.
  int run();

  kvm_regs regs() const;
  void set_regs(const kvm_regs& regs);
  kvm_sregs sregs() const;
  void set_sregs(const kvm_sregs& sregs);
  void set_fpu(const kvm_fpu& fpu);
  void set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  void set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
  kvm_lapic_state lapic() const;
  void set_lapic(const kvm_lapic_state& lapic);
  void set_mp_state(uint32_t state);

 private:
  uint32_t id_;
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t mmap_size_ = 0;
};

}  // namespace vmm::kvm
