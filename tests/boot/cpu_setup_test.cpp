#include "boot/cpu_setup.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "base/memory/layout.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {
namespace {

constexpr uint64_t kPresent = 1;
constexpr uint64_t kLarge = 1 << 7;
constexpr uint64_t kAddressMask = 0x000ffffffffff000;

// Translates `va` the way the MMU would, reading the tables back from guest memory.
std::optional<uint64_t> translate(const GuestMemory& memory, uint64_t cr3, uint64_t va) {
  const auto pml4e = memory.read_obj<uint64_t>((cr3 & kAddressMask) + ((va >> 39) & 511) * 8);
  if (!pml4e || !(*pml4e & kPresent)) return std::nullopt;
  const auto pdpte = memory.read_obj<uint64_t>((*pml4e & kAddressMask) + ((va >> 30) & 511) * 8);
  if (!pdpte || !(*pdpte & kPresent) || (*pdpte & kLarge)) return std::nullopt;
  const auto pde = memory.read_obj<uint64_t>((*pdpte & kAddressMask) + ((va >> 21) & 511) * 8);
  if (!pde || !(*pde & kPresent) || !(*pde & kLarge)) return std::nullopt;
  return (*pde & 0x000fffffffe00000) | (va & (2 * MiB - 1));
}

TEST(PageTablesTest, IdentityMapsTheLow4GiB) {
  const GuestMemory memory = GuestMemory::allocate(64 * MiB);
  const uint64_t cr3 = write_identity_page_tables(memory);
  EXPECT_EQ(cr3, layout::kPageTables);
  for (uint64_t va :
       {uint64_t{0}, uint64_t{0x7000}, uint64_t{0x1000200}, uint64_t{0x3fffffff},
        uint64_t{0x40000000}, uint64_t{0xc0001234}, uint64_t{0xfee00000}, uint64_t{0xffffffff}}) {
    EXPECT_EQ(translate(memory, cr3, va), va) << std::hex << va;
  }
  EXPECT_EQ(translate(memory, cr3, uint64_t{1} << 32), std::nullopt);
}

TEST(CpuStateTest, LongModeEntry) {
  const GuestMemory memory = GuestMemory::allocate(64 * MiB);
  const BootCpuState s = long_mode_cpu_state(memory, 0x1000200, layout::kZeroPage);

  EXPECT_EQ(s.regs.rip, 0x1000200u);
  EXPECT_EQ(s.regs.rsi, layout::kZeroPage);
  EXPECT_EQ(s.regs.rsp, layout::kBootStack);
  EXPECT_EQ(s.regs.rflags, 0x2u);
  EXPECT_EQ(s.sregs.cr0 & 0x80010033, 0x80010033u);
  EXPECT_EQ(s.sregs.cr3, layout::kPageTables);
  EXPECT_EQ(s.sregs.cr4, 0x20u);
  EXPECT_EQ(s.sregs.efer, 0x500u);
  EXPECT_EQ(s.sregs.cs.selector, kBootCode64Selector);
  EXPECT_EQ(s.sregs.cs.l, 1);
  EXPECT_EQ(s.sregs.cs.db, 0);
  EXPECT_EQ(s.sregs.cs.present, 1);
  EXPECT_EQ(s.sregs.cs.s, 1);
  EXPECT_EQ(s.sregs.cs.type, 0xb);
  EXPECT_EQ(s.sregs.ds.selector, kBootDataSelector);
  EXPECT_EQ(s.sregs.ss.type, 0x3);
  EXPECT_EQ(s.sregs.ss.limit, 0xffffffffu);
  EXPECT_EQ(s.sregs.gdt.base, layout::kBootGdt);
  EXPECT_EQ(s.sregs.tr.type, 0xb);
  EXPECT_EQ(s.sregs.apic_base & 0xfffff000, layout::kLapicAddress);
  EXPECT_EQ(s.fpu.fcw, 0x37f);
  EXPECT_EQ(s.fpu.mxcsr, 0x1f80u);

  // The descriptors in memory are the ones the hidden segment state was built from.
  const auto code = memory.read_obj<uint64_t>(layout::kBootGdt + kBootCode64Selector);
  const auto data = memory.read_obj<uint64_t>(layout::kBootGdt + kBootDataSelector);
  ASSERT_TRUE(code && data);
  EXPECT_EQ(*code, 0x00af9b000000ffffu);
  EXPECT_EQ(*data, 0x00cf93000000ffffu);
  EXPECT_EQ(memory.read_obj<uint64_t>(layout::kBootGdt), 0u);

  const std::map<uint32_t, uint64_t> msrs(s.msrs.begin(), s.msrs.end());
  EXPECT_EQ(msrs.at(0x1a0), 1u);      // IA32_MISC_ENABLE: fast strings
  EXPECT_EQ(msrs.at(0x2ff), 0xc06u);  // MTRRdefType: enabled, write-back
  EXPECT_EQ(msrs.at(0xc0000082), 0u);
  // The TSC is left as KVM set it: writing it on the boot vCPU alone would desynchronise it
  // from the others.
  EXPECT_EQ(msrs.count(0x10), 0u);
}

TEST(CpuStateTest, PvhEntry) {
  const GuestMemory memory = GuestMemory::allocate(64 * MiB);
  const BootCpuState s = pvh_cpu_state(memory, 0x1000080, layout::kPvhStartInfo);

  EXPECT_EQ(s.regs.rip, 0x1000080u);
  EXPECT_EQ(s.regs.rbx, layout::kPvhStartInfo);
  EXPECT_EQ(s.sregs.cr0 & 0x80000001, 1u);  // protected mode, paging off
  EXPECT_EQ(s.sregs.cr4, 0u);
  EXPECT_EQ(s.sregs.efer, 0u);
  EXPECT_EQ(s.sregs.cs.selector, kBootCode32Selector);
  EXPECT_EQ(s.sregs.cs.db, 1);
  EXPECT_EQ(s.sregs.cs.l, 0);
  EXPECT_EQ(s.sregs.cs.base, 0u);
  EXPECT_EQ(s.sregs.cs.limit, 0xffffffffu);
  EXPECT_EQ(s.sregs.ds.limit, 0xffffffffu);
  EXPECT_EQ(s.sregs.tr.limit, 0x67u);
  const auto code32 = memory.read_obj<uint64_t>(layout::kBootGdt + kBootCode32Selector);
  ASSERT_TRUE(code32);
  EXPECT_EQ(*code32, 0x00cf9b000000ffffu);
}

}  // namespace
}  // namespace vmm::boot
