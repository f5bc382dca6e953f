#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/util/state_stream.hpp"

namespace vmm::kvm {

// The CPU a vCPU's CPUID describes, as a snapshot's manifest names it.
struct CpuIdentity {
  std::string vendor;   // leaf 0: "GenuineIntel", "AuthenticAMD", ...
  uint32_t family = 0;  // leaf 1, with the extended family and model folded in
  uint32_t model = 0;
  bool operator==(const CpuIdentity&) const = default;
};

// Which CPU a CPUID table describes (leaves 0 and 1; throws vmm::Error without them): what a
// snapshot must match to be restored, since the guest's kernel chose its code paths for it.
CpuIdentity cpu_identity(const std::vector<kvm_cpuid_entry2>& cpuid);

// The XSAVE area as KVM_GET_XSAVE(2) writes it: at least 4 KiB, more with AMX and the like.
using XsaveArea = std::vector<uint8_t>;

// Everything KVM holds for one vCPU that a snapshot must carry (Vcpu::save_state and
// Vcpu::restore_state move it in and out of KVM).
struct VcpuState {
  // Limits for loading an untrusted state.
  static constexpr size_t kMaxMsrs = 1024;
  static constexpr size_t kMaxCpuidEntries = 256;  // KVM's own limit (KVM_MAX_CPUID_ENTRIES)
  static constexpr size_t kMinXsaveBytes = 4096;
  static constexpr size_t kMaxXsaveBytes = size_t{64} << 10;

  kvm_regs regs{};
  kvm_sregs sregs{};
  // The x87, SSE and extended registers: the XSAVE area, or on a host without XSAVE the kvm_fpu.
  std::variant<XsaveArea, kvm_fpu> fpu;
  std::optional<kvm_xcrs> xcrs;                     // where the host has KVM_CAP_XCRS
  std::vector<std::pair<uint32_t, uint64_t>> msrs;  // (index, value), in the order read
  kvm_lapic_state lapic{};
  kvm_mp_state mp_state{};
  kvm_vcpu_events events{};
  kvm_debugregs debugregs{};
  std::vector<kvm_cpuid_entry2> cpuid;  // what the guest was given (KVM_SET_CPUID2)
  uint32_t tsc_khz = 0;                 // the guest's TSC frequency; 0 where KVM didn't know it

  // The vendor, family and model of cpuid; throws when it lacks leaf 0 or 1.
  CpuIdentity cpu_identity() const;

  void save(StateWriter& out) const;
  // Reads the whole of `in` (one vCPU's section: trailing bytes are corruption). Counts, sizes,
  // enums and flags are checked; what only KVM can judge (register values) KVM checks at restore.
  static VcpuState load(StateReader& in);
};

}  // namespace vmm::kvm
