#include "base/kvm/vcpu_state.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "base/util/error.hpp"

namespace vmm::kvm {

namespace {

constexpr uint32_t kKnownCpuidFlags =
    KVM_CPUID_FLAG_SIGNIFCANT_INDEX | KVM_CPUID_FLAG_STATEFUL_FUNC | KVM_CPUID_FLAG_STATE_READ_NEXT;

// The MP states KVM_SET_MP_STATE takes on x86.
bool is_x86_mp_state(uint32_t state) {
  constexpr std::array kStates{KVM_MP_STATE_RUNNABLE,      KVM_MP_STATE_UNINITIALIZED,
                               KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_HALTED,
                               KVM_MP_STATE_SIPI_RECEIVED, KVM_MP_STATE_AP_RESET_HOLD};
  return std::find(kStates.begin(), kStates.end(), state) != kStates.end();
}

const kvm_cpuid_entry2& cpuid_leaf(const std::vector<kvm_cpuid_entry2>& entries, uint32_t leaf) {
  const auto it = std::find_if(entries.begin(), entries.end(), [leaf](const auto& entry) {
    return entry.function == leaf && entry.index == 0;
  });
  if (it == entries.end()) fail("vCPU state: the CPUID has no leaf {:#x}", leaf);
  return *it;
}

}  // namespace

CpuIdentity VcpuState::cpu_identity() const {
  return kvm::cpu_identity(cpuid);
}

CpuIdentity cpu_identity(const std::vector<kvm_cpuid_entry2>& cpuid) {
  const kvm_cpuid_entry2& leaf0 = cpuid_leaf(cpuid, 0);
  CpuIdentity identity;
  for (const uint32_t word : {leaf0.ebx, leaf0.edx, leaf0.ecx}) {
    for (int shift = 0; shift < 32; shift += 8) {
      identity.vendor.push_back(static_cast<char>((word >> shift) & 0xff));
    }
  }
  // Intel's and AMD's rule: the extended family adds to family 15 only, the extended model
  // prefixes the model of families 6 and 15.
  const uint32_t eax = cpuid_leaf(cpuid, 1).eax;
  const uint32_t base_family = (eax >> 8) & 0xf;
  const uint32_t base_model = (eax >> 4) & 0xf;
  identity.family = base_family == 0xf ? base_family + ((eax >> 20) & 0xff) : base_family;
  identity.model = base_family == 0x6 || base_family == 0xf
                       ? (((eax >> 16) & 0xf) << 4) | base_model
                       : base_model;
  return identity;
}

void VcpuState::save(StateWriter& out) const {
  out.put(regs);
  out.put(sregs);
  const auto* xsave = std::get_if<XsaveArea>(&fpu);
  out.put_bool(xsave != nullptr);
  if (xsave) {
    out.put_vector(*xsave);
  } else {
    out.put(std::get<kvm_fpu>(fpu));
  }
  out.put_bool(xcrs.has_value());
  if (xcrs) out.put(*xcrs);
  out.put<uint32_t>(static_cast<uint32_t>(msrs.size()));
  for (const auto& [index, value] : msrs) {
    out.put(index);
    out.put(value);
  }
  out.put(lapic);
  out.put(mp_state);
  out.put(events);
  out.put(debugregs);
  out.put_vector(cpuid);
  out.put(tsc_khz);
}

VcpuState VcpuState::load(StateReader& in) {
  VcpuState state;
  state.regs = in.get<kvm_regs>();
  state.sregs = in.get<kvm_sregs>();
  if (in.get_bool()) {
    XsaveArea xsave = in.get_bytes(kMaxXsaveBytes);
    if (xsave.size() < kMinXsaveBytes) {
      in.corrupt(
          fmt::format("an XSAVE area of {} bytes is under {}", xsave.size(), kMinXsaveBytes));
    }
    state.fpu = std::move(xsave);
  } else {
    state.fpu = in.get<kvm_fpu>();
  }
  if (in.get_bool()) {
    const auto xcrs = in.get<kvm_xcrs>();
    if (xcrs.nr_xcrs > KVM_MAX_XCRS) in.corrupt("the XCR count is out of range");
    if (xcrs.flags != 0) in.corrupt("the XCRs have unknown flags");
    state.xcrs = xcrs;
  }
  const auto msr_count = in.get_at_most<uint32_t>(kMaxMsrs, "the MSR count");
  state.msrs.reserve(msr_count);
  for (uint32_t i = 0; i < msr_count; ++i) {
    const auto index = in.get<uint32_t>();
    state.msrs.emplace_back(index, in.get<uint64_t>());
  }
  state.lapic = in.get<kvm_lapic_state>();
  state.mp_state = in.get<kvm_mp_state>();
  if (!is_x86_mp_state(state.mp_state.mp_state)) in.corrupt("the MP state is out of range");
  state.events = in.get<kvm_vcpu_events>();
  state.debugregs = in.get<kvm_debugregs>();
  if (state.debugregs.flags != 0) in.corrupt("the debug registers have unknown flags");
  state.cpuid = in.get_vector<kvm_cpuid_entry2>(kMaxCpuidEntries);
  for (const auto& entry : state.cpuid) {
    if ((entry.flags & ~kKnownCpuidFlags) != 0) {
      in.corrupt(fmt::format("CPUID leaf {:#x} has unknown flags", entry.function));
    }
  }
  state.tsc_khz = in.get<uint32_t>();
  in.expect_end();
  return state;
}

}  // namespace vmm::kvm
