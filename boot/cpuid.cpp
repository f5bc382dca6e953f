#include "boot/cpuid.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <string_view>

#include "base/util/error.hpp"

namespace vmm::boot {

namespace {

constexpr uint32_t kLeafVendor = 0x0;
constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeafExtFeatures = 0x80000001;
constexpr uint32_t kLeafAddressSizes = 0x80000008;
constexpr uint32_t kLeafAmdTopology = 0x8000001e;

constexpr uint32_t kLeaf1EdxHtt = 1u << 28;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kExtEcxCmpLegacy = 1u << 1;

// Leaf 0xB/0x1F level types.
constexpr uint32_t kLevelSmt = 1;
constexpr uint32_t kLevelCore = 2;

enum class Vendor { kIntel, kAmd, kOther };

Vendor vendor_of(const std::vector<kvm_cpuid_entry2>& entries) {
  for (const auto& e : entries) {
    if (e.function != kLeafVendor) continue;
    char name[12];
    std::memcpy(name, &e.ebx, 4);
    std::memcpy(name + 4, &e.edx, 4);
    std::memcpy(name + 8, &e.ecx, 4);
    const std::string_view v(name, sizeof(name));
    if (v == "GenuineIntel") return Vendor::kIntel;
    if (v == "AuthenticAMD" || v == "HygonGenuine") return Vendor::kAmd;
  }
  return Vendor::kOther;
}

// The highest leaf of the range `base` belongs to (0 or 0x80000000), 0 if absent.
uint32_t max_leaf(const std::vector<kvm_cpuid_entry2>& entries, uint32_t base) {
  for (const auto& e : entries) {
    if (e.function == base) return e.eax;
  }
  return 0;
}

bool has_leaf(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function) {
  return std::any_of(entries.begin(), entries.end(),
                     [&](const kvm_cpuid_entry2& e) { return e.function == function; });
}

// Bits needed to number `count` things: ceil(log2(count)).
uint32_t id_bits(uint32_t count) {
  return count <= 1 ? 0 : std::bit_width(count - 1);
}

// Leaf 0xB / 0x1F: an SMT level of one thread and a core level of `count` cores, then the
// terminating invalid level. EDX is the x2APIC ID on every subleaf.
void add_topology_leaf(std::vector<kvm_cpuid_entry2>& out, uint32_t function, uint32_t apic_id,
                       uint32_t count) {
  auto subleaf = [&](uint32_t index, uint32_t shift, uint32_t processors, uint32_t type) {
    kvm_cpuid_entry2 e{};
    e.function = function;
    e.index = index;
    e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    e.eax = shift;
    e.ebx = processors;
    e.ecx = (type << 8) | index;
    e.edx = apic_id;
    out.push_back(e);
  };
  subleaf(0, 0, 1, kLevelSmt);
  subleaf(1, id_bits(count), count, kLevelCore);
  subleaf(2, 0, 0, 0);
}

}  // namespace

std::vector<kvm_cpuid_entry2> guest_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                          uint32_t vcpu_index, uint32_t vcpu_count) {
  // Leaf 1 has 8 bits for the APIC ID; beyond that the guest needs x2APIC IDs the in-kernel
  // IOAPIC cannot route to anyway.
  if (vcpu_count == 0 || vcpu_count > 255 || vcpu_index >= vcpu_count) {
    fail("vCPU {} of {}: the CPU topology supports 1 to 255 vCPUs", vcpu_index, vcpu_count);
  }
  const Vendor vendor = vendor_of(supported);
  const uint32_t max_basic = max_leaf(supported, 0);
  const uint32_t apic_id = vcpu_index;
  const uint32_t count = vcpu_count;

  std::vector<kvm_cpuid_entry2> out;
  out.reserve(supported.size() + 6);
  for (kvm_cpuid_entry2 e : supported) {
    switch (e.function) {
      case kLeafFeatures:
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) | (count << 16);
        e.ecx |= kLeaf1EcxHypervisor;
        if (count > 1) {
          e.edx |= kLeaf1EdxHtt;
        } else {
          e.edx &= ~kLeaf1EdxHtt;
        }
        break;
      case kLeafCacheParams:
        if (vendor == Vendor::kIntel && (e.eax & 0x1f) != 0) {
          // Caches up to L2 are per core (one thread each); L3 is shared by the whole socket.
          const uint32_t level = (e.eax >> 5) & 0x7;
          const uint32_t sharing = level >= 3 ? count - 1 : 0;
          e.eax = (e.eax & 0x3fff) | (sharing << 14) | (std::min(count - 1, 63u) << 26);
        }
        break;
      case kLeafTopology:
      case kLeafTopologyV2: continue;  // rebuilt below
      case kLeafExtFeatures:
        if (vendor == Vendor::kAmd) {
          if (count > 1) {
            e.ecx |= kExtEcxCmpLegacy;
          } else {
            e.ecx &= ~kExtEcxCmpLegacy;
          }
        }
        break;
      case kLeafAddressSizes:
        if (vendor == Vendor::kAmd) {
          // NC = cores - 1 in [7:0], ApicIdSize in [15:12]; PerfTscSize and the rest kept.
          e.ecx = (e.ecx & ~0xf0ffu) | (id_bits(count) << 12) | (count - 1);
        }
        break;
      case kLeafAmdTopology:
        e.eax = apic_id;
        e.ebx = apic_id & 0xff;  // core id; threads per core - 1 = 0 in [15:8]
        e.ecx = 0;               // node 0, one node per socket
        e.edx = 0;
        break;
      default: break;
    }
    out.push_back(e);
  }
  if (max_basic >= kLeafTopology) add_topology_leaf(out, kLeafTopology, apic_id, count);
  if (max_basic >= kLeafTopologyV2 && has_leaf(supported, kLeafTopologyV2)) {
    add_topology_leaf(out, kLeafTopologyV2, apic_id, count);
  }
  return out;
}

}  // namespace vmm::boot
