#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

namespace vmm::boot {

// The CPUID table for one vCPU, derived from KVM_GET_SUPPORTED_CPUID's list: `vcpu_count` cores in
// one socket, one thread per core, APIC ID = `vcpu_index`, the hypervisor bit set. Topology leaves
// are rewritten so that leaf 1, 4, 0xB/0x1F (Intel) and 0x80000001/8/1E (AMD) agree with each
// other; everything else, including the KVM paravirt leaves from 0x40000000, is kept as supplied.
std::vector<kvm_cpuid_entry2> guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                          uint32_t vcpu_index, uint32_t vcpu_count);

}  // namespace vmm::boot

namespace vmm::boot {

// Which CPU a CPUID table describes: what a snapshot must match to be restored (a guest's kernel
// chose its code paths, errata and features for this CPU).
struct CpuIdentity {
  std::string vendor;  // leaf 0: "AuthenticAMD", "GenuineIntel"
  uint32_t family = 0;
  uint32_t model = 0;
  bool operator==(const CpuIdentity&) const = default;
};

// Family and model as the SDM/APM combine them (the extended fields count from family 0xf on,
// the extended model also for Intel's family 6).
CpuIdentity cpu_identity(const std::vector<kvm_cpuid_entry2>& entries);

}  // namespace vmm::boot
