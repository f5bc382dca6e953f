#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "base/kvm/vcpu_state.hpp"
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

  // Everything KVM holds for this vCPU, with the MSRs `msr_indices` lists (Kvm::msrs_to_save; those
  // KVM refuses to read are left out). The vCPU must not be running (every vCPU of the machine
  // parked: the events of one may be changing while another runs).
  VcpuState save_state(std::span<const uint32_t> msr_indices) const;
  // Puts `state` back, into a vCPU that has not run yet. Then tells the guest's kvmclock it was
  // stopped, so its watchdogs take the clock's jump for the pause it was.
  void restore_state(const VcpuState& state);

 private:
  std::variant<XsaveArea, kvm_fpu> read_fpu() const;
  void write_fpu(const std::variant<XsaveArea, kvm_fpu>& fpu);
  std::vector<std::pair<uint32_t, uint64_t>> read_msrs(std::span<const uint32_t> indices) const;
  uint32_t tsc_khz() const;
  void restore_tsc_khz(uint32_t saved_khz);

  uint32_t id_;
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t mmap_size_ = 0;
  // What the host offers for this vCPU's state, asked once at creation (after KVM_CREATE_VCPU:
  // the XSAVE size depends on the guest features KVM fixes then), so that saving asks KVM nothing
  // but the state itself.
  size_t xsave_size_ = 0;  // the bytes KVM_GET_XSAVE(2) writes; 0: the host has no XSAVE
  bool has_xcrs_ = false;
  bool tsc_control_ = false;  // KVM_SET_TSC_KHZ works
};

}  // namespace vmm::kvm
