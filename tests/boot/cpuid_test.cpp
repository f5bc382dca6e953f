#include "boot/cpuid.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::error_of;

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                      uint32_t edx, uint32_t flags = 0) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  e.flags = flags;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

kvm_cpuid_entry2 vendor_leaf(uint32_t max, const char (&name)[13]) {
  uint32_t regs[3];
  std::memcpy(regs, name, 12);
  return leaf(0, 0, max, regs[0], regs[2], regs[1]);  // EBX, EDX, ECX spell the name
}

constexpr uint32_t kIndexed = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;

// Roughly what KVM reports on an Intel host with SMT: the host's APIC ID and counts leak through.
std::vector<kvm_cpuid_entry2> intel_supported() {
  return {
      vendor_leaf(0x1f, "GenuineIntel"),
      leaf(1, 0, 0x906ea, 0x07100800, 0x7ffafbff, 0xbfebfbff),
      leaf(4, 0, 0x1c004121, 0x01c0003f, 0x3f, 0, kIndexed),    // L1d
      leaf(4, 1, 0x1c004143, 0x01c0003f, 0x3ff, 0, kIndexed),   // L2
      leaf(4, 2, 0x1c03c163, 0x03c0003f, 0x2fff, 6, kIndexed),  // L3
      leaf(4, 3, 0, 0, 0, 0, kIndexed),
      leaf(0xb, 0, 1, 2, 0x100, 7, kIndexed),
      leaf(0xb, 1, 4, 16, 0x201, 7, kIndexed),
      leaf(0x1f, 0, 1, 2, 0x100, 7, kIndexed),
      leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
      leaf(0x80000000, 0, 0x80000008, 0, 0, 0),
      leaf(0x80000001, 0, 0, 0, 0x121, 0x2c100800),
      leaf(0x80000008, 0, 0x3027, 0, 0, 0),
  };
}

std::vector<kvm_cpuid_entry2> amd_supported() {
  return {
      vendor_leaf(0x10, "AuthenticAMD"),
      leaf(1, 0, 0x830f10, 0x0a100800, 0x7ed8320b, 0x178bfbff),
      leaf(0x80000000, 0, 0x8000001f, 0, 0, 0),
      leaf(0x80000001, 0, 0x830f10, 0, 0x75c237ff, 0x2fd3fbff),
      leaf(0x80000008, 0, 0x3030, 0, 0x700f, 0),
      leaf(0x8000001e, 0, 0x14, 0x107, 0x0, 0),
  };
}

std::optional<kvm_cpuid_entry2> find(const std::vector<kvm_cpuid_entry2>& entries,
                                     uint32_t function, uint32_t index = 0) {
  for (const auto& e : entries) {
    if (e.function == function && e.index == index) return e;
  }
  return std::nullopt;
}

size_t count_of(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function) {
  return std::count_if(entries.begin(), entries.end(),
                       [&](const kvm_cpuid_entry2& e) { return e.function == function; });
}

TEST(CpuidTest, SingleVcpu) {
  const auto out = guest_cpuid(intel_supported(), 0, 1);
  const auto l1 = find(out, 1);
  ASSERT_TRUE(l1);
  EXPECT_EQ(l1->ebx >> 24, 0u);
  EXPECT_EQ((l1->ebx >> 16) & 0xff, 1u);
  EXPECT_EQ(l1->ebx & 0xffff, 0x0800u);  // CLFLUSH line size kept
  EXPECT_EQ(l1->edx & (1u << 28), 0u);   // no HTT
  EXPECT_NE(l1->ecx & (1u << 31), 0u);   // hypervisor
  const auto core = find(out, 0xb, 1);
  ASSERT_TRUE(core);
  EXPECT_EQ(core->eax, 0u);
  EXPECT_EQ(core->ebx, 1u);
  EXPECT_EQ((find(out, 4, 0)->eax >> 26), 0u);
}

TEST(CpuidTest, FourVcpusOnIntel) {
  for (uint32_t id = 0; id < 4; ++id) {
    const auto out = guest_cpuid(intel_supported(), id, 4);
    const auto l1 = find(out, 1);
    ASSERT_TRUE(l1);
    EXPECT_EQ(l1->ebx >> 24, id);
    EXPECT_EQ((l1->ebx >> 16) & 0xff, 4u);
    EXPECT_NE(l1->edx & (1u << 28), 0u);

    for (uint32_t function : {0xbu, 0x1fu}) {
      ASSERT_EQ(count_of(out, function), 3u) << function;
      const auto smt = find(out, function, 0);
      const auto core = find(out, function, 1);
      const auto end = find(out, function, 2);
      EXPECT_EQ(smt->eax & 0x1f, 0u);
      EXPECT_EQ(smt->ebx, 1u);
      EXPECT_EQ(smt->ecx, 0x100u);
      EXPECT_EQ(core->eax & 0x1f, 2u);  // two bits of core id below the package id
      EXPECT_EQ(core->ebx, 4u);
      EXPECT_EQ(core->ecx, 0x201u);
      EXPECT_EQ(end->ecx, 2u);  // invalid level: the list ends
      for (const auto& e : {*smt, *core, *end}) {
        EXPECT_EQ(e.edx, id);
        EXPECT_EQ(e.flags, kIndexed);
      }
    }
    // Cores per package in every cache leaf; L1/L2 private, L3 shared by all four.
    EXPECT_EQ(find(out, 4, 0)->eax >> 26, 3u);
    EXPECT_EQ((find(out, 4, 0)->eax >> 14) & 0xfff, 0u);
    EXPECT_EQ((find(out, 4, 1)->eax >> 14) & 0xfff, 0u);
    EXPECT_EQ((find(out, 4, 2)->eax >> 14) & 0xfff, 3u);
    EXPECT_EQ(find(out, 4, 2)->eax & 0x3fff, 0x0163u);  // cache type and level kept
    EXPECT_EQ(find(out, 4, 3)->eax, 0u);
    // Intel leaves AMD's fields alone; the paravirt leaf is untouched.
    EXPECT_EQ(find(out, 0x80000008)->ecx, 0u);
    EXPECT_EQ(find(out, 0x80000001)->ecx, 0x121u);
    EXPECT_EQ(find(out, 0x40000000)->ebx, 0x4b4d564bu);
  }
}

TEST(CpuidTest, FourVcpusOnAmd) {
  const auto out = guest_cpuid(amd_supported(), 2, 4);
  EXPECT_EQ(find(out, 1)->ebx >> 24, 2u);
  EXPECT_EQ((find(out, 1)->ebx >> 16) & 0xff, 4u);
  EXPECT_NE(find(out, 0x80000001)->ecx & 0x2, 0u);  // CmpLegacy
  const auto sizes = find(out, 0x80000008);
  EXPECT_EQ(sizes->ecx & 0xff, 3u);
  EXPECT_EQ((sizes->ecx >> 12) & 0xf, 2u);
  EXPECT_EQ(sizes->ecx & 0x30000, 0u);  // PerfTscSize kept (0)
  const auto topo = find(out, 0x8000001e);
  EXPECT_EQ(topo->eax, 2u);
  EXPECT_EQ(topo->ebx, 2u);
  EXPECT_EQ(topo->ecx, 0u);
  // Max basic leaf 0x10 covers 0xB, which Linux also reads on AMD: it gets the same topology.
  ASSERT_EQ(count_of(out, 0xb), 3u);
  EXPECT_EQ(find(out, 0xb, 1)->ebx, 4u);
  EXPECT_EQ(find(out, 0xb, 1)->edx, 2u);
  EXPECT_EQ(count_of(out, 0x1f), 0u);  // not supplied, so not invented

  const auto single = guest_cpuid(amd_supported(), 0, 1);
  EXPECT_EQ(find(single, 0x80000001)->ecx & 0x2, 0u);
  EXPECT_EQ(find(single, 0x80000008)->ecx & 0xf0ff, 0u);
}

TEST(CpuidTest, NoTopologyLeafBeyondTheMaxBasicLeaf) {
  auto supported = amd_supported();
  supported[0].eax = 0xa;
  EXPECT_EQ(count_of(guest_cpuid(supported, 0, 2), 0xb), 0u);
}

TEST(CpuidTest, RejectsImpossibleTopology) {
  EXPECT_NE(error_of([] { guest_cpuid(intel_supported(), 0, 0); }), "");
  EXPECT_NE(error_of([] { guest_cpuid(intel_supported(), 4, 4); }), "");
  EXPECT_NE(error_of([] { guest_cpuid(intel_supported(), 0, 256); }), "");
}

}  // namespace
}  // namespace vmm::boot
