#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace vmm::boot {

// The CPUID table for one vCPU, derived from KVM_GET_SUPPORTED_CPUID's list: `vcpu_count` cores in
// one socket, one thread per core, APIC ID = `vcpu_index`, the hypervisor bit set. Topology leaves
// are rewritten so that leaf 1, 4, 0xB/0x1F (Intel) and 0x80000001/8/1E (AMD) agree with each
// other; everything else, including the KVM paravirt leaves from 0x40000000, is kept as supplied.
std::vector<kvm_cpuid_entry2> guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                          uint32_t vcpu_index, uint32_t vcpu_count);

}  // namespace vmm::boot
