#include "base/kvm/vcpu.hpp"

#include <sys/mman.h>

#include <cerrno>

#include "base/kvm/ioctl.hpp"

namespace vmm::kvm {

Vcpu::Vcpu(const Vm& vm, uint32_t id, size_t mmap_size)
    : id_(id),
      fd_(VMM_IOCTL(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(id))),
      mmap_size_(mmap_size) {
  void* p = ::mmap(nullptr, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) throw_errno(fmt::format("mmap of vCPU {} state", id));
  run_ = static_cast<kvm_run*>(p);
}

Vcpu::Vcpu(Vcpu&& other) noexcept
    : id_(other.id_),
      fd_(std::move(other.fd_)),
      run_(std::exchange(other.run_, nullptr)),
      mmap_size_(other.mmap_size_) {}

Vcpu::~Vcpu() {
  if (run_) ::munmap(run_, mmap_size_);
}

int Vcpu::run() {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return 0;
  const int err = errno;
  if (err == EINTR || err == EAGAIN) return -err;
  throw Error(errno_message(fmt::format("KVM_RUN on vCPU {}", id_), err));
}

kvm_regs Vcpu::regs() const {
  kvm_regs regs{};
  VMM_IOCTL(fd_.get(), KVM_GET_REGS, &regs);
  return regs;
}

void Vcpu::set_regs(const kvm_regs& regs) {
  VMM_IOCTL(fd_.get(), KVM_SET_REGS, &regs);
}

kvm_sregs Vcpu::sregs() const {
  kvm_sregs sregs{};
  VMM_IOCTL(fd_.get(), KVM_GET_SREGS, &sregs);
  return sregs;
}

void Vcpu::set_sregs(const kvm_sregs& sregs) {
  VMM_IOCTL(fd_.get(), KVM_SET_SREGS, &sregs);
}

void Vcpu::set_fpu(const kvm_fpu& fpu) {
  VMM_IOCTL(fd_.get(), KVM_SET_FPU, &fpu);
}

void Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  auto buffer = flex_buffer(CpuidHeader{static_cast<uint32_t>(entries.size()), 0},
                            std::span<const kvm_cpuid_entry2>(entries));
  checked_ioctl(fd_.get(), kSetCpuid2, "KVM_SET_CPUID2", buffer.data());
}

void Vcpu::set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  std::vector<kvm_msr_entry> entries(msrs.size());
  for (size_t i = 0; i < msrs.size(); ++i) {
    entries[i].index = msrs[i].first;
    entries[i].data = msrs[i].second;
  }
  auto buffer = flex_buffer(MsrsHeader{static_cast<uint32_t>(entries.size()), 0},
                            std::span<const kvm_msr_entry>(entries));
  const int written = checked_ioctl(fd_.get(), kSetMsrs, "KVM_SET_MSRS", buffer.data());
  if (written != static_cast<int>(msrs.size())) {
    fail("KVM_SET_MSRS: vCPU {} rejected MSR {:#x}", id_, msrs[static_cast<size_t>(written)].first);
  }
}

kvm_lapic_state Vcpu::lapic() const {
  kvm_lapic_state state{};
  VMM_IOCTL(fd_.get(), KVM_GET_LAPIC, &state);
  return state;
}

void Vcpu::set_lapic(const kvm_lapic_state& lapic) {
  VMM_IOCTL(fd_.get(), KVM_SET_LAPIC, &lapic);
}

void Vcpu::set_mp_state(uint32_t state) {
  kvm_mp_state mp{state};
  VMM_IOCTL(fd_.get(), KVM_SET_MP_STATE, &mp);
}

}  // namespace vmm::kvm
