#include "base/kvm/vcpu.hpp"

#include <sys/mman.h>

#include <algorithm>
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
  if (check_extension(vm.fd(), KVM_CAP_XSAVE) > 0) {
    xsave_size_ = std::max(sizeof(XsaveRegion),
                           static_cast<size_t>(check_extension(vm.fd(), KVM_CAP_XSAVE2)));
  }
  has_xcrs_ = check_extension(vm.fd(), KVM_CAP_XCRS) > 0;
  tsc_control_ = check_extension(vm.fd(), KVM_CAP_TSC_CONTROL) > 0;
}

Vcpu::Vcpu(Vcpu&& other) noexcept
    : id_(other.id_),
      fd_(std::move(other.fd_)),
      run_(std::exchange(other.run_, nullptr)),
      mmap_size_(other.mmap_size_),
      xsave_size_(other.xsave_size_),
      has_xcrs_(other.has_xcrs_),
      tsc_control_(other.tsc_control_) {}

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
  for (size_t first = 0; first < msrs.size(); first += kMaxMsrsPerIoctl) {
    const size_t count = std::min(kMaxMsrsPerIoctl, msrs.size() - first);
    std::vector<kvm_msr_entry> entries(count);
    for (size_t i = 0; i < count; ++i) {
      entries[i].index = msrs[first + i].first;
      entries[i].data = msrs[first + i].second;
    }
    auto buffer = flex_buffer(MsrsHeader{static_cast<uint32_t>(count), 0},
                              std::span<const kvm_msr_entry>(entries));
    const auto written =
        static_cast<size_t>(checked_ioctl(fd_.get(), kSetMsrs, "KVM_SET_MSRS", buffer.data()));
    if (written < count) {
      fail("KVM_SET_MSRS: vCPU {} rejected MSR {:#x}", id_, msrs[first + written].first);
    }
  }
}

std::vector<std::pair<uint32_t, uint64_t>> Vcpu::read_msrs(
    std::span<const uint32_t> indices) const {
  std::vector<std::pair<uint32_t, uint64_t>> values;
  values.reserve(indices.size());
  while (!indices.empty()) {
    const size_t count = std::min(kMaxMsrsPerIoctl, indices.size());
    std::vector<kvm_msr_entry> entries(count);
    for (size_t i = 0; i < count; ++i) entries[i].index = indices[i];
    auto buffer = flex_buffer(MsrsHeader{static_cast<uint32_t>(count), 0},
                              std::span<const kvm_msr_entry>(entries));
    const size_t read = std::min(count, static_cast<size_t>(checked_ioctl(
                                            fd_.get(), kGetMsrs, "KVM_GET_MSRS", buffer.data())));
    for (const auto& entry : flex_entries<MsrsHeader, kvm_msr_entry>(buffer, read)) {
      values.emplace_back(entry.index, entry.data);
    }
    // KVM stops at the first MSR it refuses (one this CPU or configuration lacks): that one is
    // left out, and the rest read on.
    indices = indices.subspan(read < count ? read + 1 : count);
  }
  return values;
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

std::variant<XsaveArea, kvm_fpu> Vcpu::read_fpu() const {
  if (xsave_size_ == 0) {
    kvm_fpu fpu{};
    VMM_IOCTL(fd_.get(), KVM_GET_FPU, &fpu);
    return fpu;
  }
  XsaveArea xsave(xsave_size_);
  if (xsave_size_ > sizeof(XsaveRegion)) {
    checked_ioctl(fd_.get(), kGetXsave2, "KVM_GET_XSAVE2", xsave.data());
  } else {
    checked_ioctl(fd_.get(), kGetXsave, "KVM_GET_XSAVE", xsave.data());
  }
  return xsave;
}

void Vcpu::write_fpu(const std::variant<XsaveArea, kvm_fpu>& fpu) {
  if (const auto* legacy = std::get_if<kvm_fpu>(&fpu)) {
    set_fpu(*legacy);
    return;
  }
  const auto& saved = std::get<XsaveArea>(fpu);
  if (xsave_size_ == 0) fail("vCPU {}: the saved state needs XSAVE, which this host lacks", id_);
  if (saved.size() > xsave_size_) {
    fail("vCPU {}: the saved XSAVE area of {} bytes is larger than this host's {}", id_,
         saved.size(), xsave_size_);
  }
  // KVM_SET_XSAVE reads the host's size; a smaller saved area had no state past its end, so the
  // rest is zeros.
  XsaveArea xsave(xsave_size_, 0);
  std::copy(saved.begin(), saved.end(), xsave.begin());
  checked_ioctl(fd_.get(), kSetXsave, "KVM_SET_XSAVE", xsave.data());
}

uint32_t Vcpu::tsc_khz() const {
  return static_cast<uint32_t>(VMM_IOCTL(fd_.get(), KVM_GET_TSC_KHZ, 0UL));
}

void Vcpu::restore_tsc_khz(uint32_t saved_khz) {
  if (saved_khz == 0) return;
  // Within 250 ppm is the same frequency: one host's TSC calibration varies that much from boot to
  // boot (QEMU's tolerance too).
  const uint32_t current_khz = tsc_khz();
  const uint64_t difference =
      current_khz > saved_khz ? current_khz - saved_khz : saved_khz - current_khz;
  if (difference * 1'000'000 <= uint64_t{saved_khz} * 250) return;
  // A host without TSC scaling runs the guest's TSC at its own rate: kvmclock still tells the
  // guest the right time.
  if (!tsc_control_) return;
  VMM_IOCTL(fd_.get(), KVM_SET_TSC_KHZ, static_cast<unsigned long>(saved_khz));
}

namespace {

// KVM clears the TSC deadline when the timer fires and delivers the interrupt at the next entry: a
// save in between finds neither (kvm_lapic_state has no pending timer), and the restored guest
// would wait for that tick for ever. A zero deadline is saved as the current TSC, so the restored
// timer fires at once; at worst that is one spurious tick, and KVM ignores the deadline when the
// LAPIC timer is not in TSC-deadline mode.
void arm_zero_tsc_deadline(std::vector<std::pair<uint32_t, uint64_t>>& msrs) {
  const auto tsc = std::find_if(msrs.begin(), msrs.end(),
                                [](const auto& msr) { return msr.first == kMsrIa32Tsc; });
  if (tsc == msrs.end()) return;
  for (auto& [index, value] : msrs) {
    if (index == kMsrIa32TscDeadline && value == 0) value = tsc->second;
  }
}

// KVM arms the TSC deadline timer against the guest's TSC as it stands: the TSC goes in first and
// the deadline last, whatever order the state lists them in.
std::vector<std::pair<uint32_t, uint64_t>> in_restore_order(
    std::vector<std::pair<uint32_t, uint64_t>> msrs) {
  std::stable_partition(msrs.begin(), msrs.end(),
                        [](const auto& msr) { return msr.first == kMsrIa32Tsc; });
  std::stable_partition(msrs.begin(), msrs.end(),
                        [](const auto& msr) { return msr.first != kMsrIa32TscDeadline; });
  return msrs;
}

}  // namespace

VcpuState Vcpu::save_state(std::span<const uint32_t> msr_indices) const {
  VcpuState state;
  // The MP state first: reading it makes KVM act on pending INIT and SIPI, which changes the
  // registers and LAPIC read after it.
  VMM_IOCTL(fd_.get(), KVM_GET_MP_STATE, &state.mp_state);
  state.regs = regs();
  state.sregs = sregs();
  state.fpu = read_fpu();
  if (has_xcrs_) {
    kvm_xcrs xcrs{};
    VMM_IOCTL(fd_.get(), KVM_GET_XCRS, &xcrs);
    state.xcrs = xcrs;
  }
  VMM_IOCTL(fd_.get(), KVM_GET_DEBUGREGS, &state.debugregs);
  state.lapic = lapic();
  state.tsc_khz = tsc_khz();
  state.cpuid = read_cpuid(fd_.get(), kGetCpuid2, "KVM_GET_CPUID2");
  state.msrs = read_msrs(msr_indices);
  arm_zero_tsc_deadline(state.msrs);
  // The events last: the reads above may change the pending exception, NMI or interrupt they
  // report.
  VMM_IOCTL(fd_.get(), KVM_GET_VCPU_EVENTS, &state.events);
  return state;
}

void Vcpu::restore_state(const VcpuState& state) {
  // The TSC frequency before the TSC MSR, which KVM turns into an offset at the guest's rate.
  restore_tsc_khz(state.tsc_khz);
  // CPUID before the rest: KVM checks the XSAVE features, XCRs and MSRs set below against it.
  set_cpuid(state.cpuid);
  set_mp_state(state.mp_state.mp_state);
  // The registers before the events: KVM_SET_REGS drops a pending exception, which the events
  // carry.
  set_regs(state.regs);
  // The special registers before the LAPIC: they carry the APIC base.
  set_sregs(state.sregs);
  write_fpu(state.fpu);
  if (state.xcrs) VMM_IOCTL(fd_.get(), KVM_SET_XCRS, &*state.xcrs);
  VMM_IOCTL(fd_.get(), KVM_SET_DEBUGREGS, &state.debugregs);
  // The LAPIC before the MSRs: KVM takes the TSC deadline only from a configured LAPIC.
  set_lapic(state.lapic);
  set_msrs(in_restore_order(state.msrs));
  VMM_IOCTL(fd_.get(), KVM_SET_VCPU_EVENTS, &state.events);
  // Marks the guest's kvmclock as stopped, so its soft-lockup watchdog takes the clock's jump for
  // the pause it was. KVM answers EINVAL for a guest that doesn't use kvmclock: nothing to tell.
  if (::ioctl(fd_.get(), KVM_KVMCLOCK_CTRL, 0UL) < 0 && errno != EINVAL) {
    throw_errno("KVM_KVMCLOCK_CTRL");
  }
}

}  // namespace vmm::kvm
