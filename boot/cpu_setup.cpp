#include "boot/cpu_setup.hpp"

#include <array>
#include <cstring>

#include "base/memory/layout.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {

namespace {

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Mp = 1ull << 1;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Ne = 1ull << 5;
constexpr uint64_t kCr0Wp = 1ull << 16;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;
constexpr uint64_t kApicBaseEnable = 1ull << 11;
constexpr uint64_t kApicBaseBsp = 1ull << 8;
constexpr uint64_t kRflagsReserved = 1ull << 1;  // always-one bit

constexpr uint64_t kPtePresent = 1ull << 0;
constexpr uint64_t kPteWritable = 1ull << 1;
constexpr uint64_t kPteLarge = 1ull << 7;
constexpr uint64_t kPageSize = 4096;
constexpr uint64_t kPageDirectories = 4;  // one per GiB of the identity map

// Descriptor access/flag bits in the layout of bits 40..55 of a GDT entry.
constexpr uint16_t kCode64Flags = 0xa09b;  // G, L, present, DPL0, code exec/read accessed
constexpr uint16_t kCode32Flags = 0xc09b;  // G, D/B, present, DPL0, code exec/read accessed
constexpr uint16_t kDataFlags = 0xc093;    // G, D/B, present, DPL0, data read/write accessed
constexpr uint32_t kFlatLimit = 0xfffff;   // in 4 KiB units: 4 GiB

constexpr uint32_t kMsrIa32SysenterCs = 0x174;
constexpr uint32_t kMsrIa32SysenterEsp = 0x175;
constexpr uint32_t kMsrIa32SysenterEip = 0x176;
constexpr uint32_t kMsrIa32MiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSfmask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr uint64_t kMiscEnableFastStrings = 1ull << 0;
constexpr uint64_t kMtrrEnableWriteBack = (1ull << 11) | (1ull << 10) | 0x6;  // E, FE, type WB

constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0xf0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) |
         (uint64_t{limit} & 0xffff);
}

// Index = selector / 8.
constexpr std::array<uint64_t, 4> kGdt = {
    0,
    gdt_entry(kCode32Flags, 0, kFlatLimit),
    gdt_entry(kCode64Flags, 0, kFlatLimit),
    gdt_entry(kDataFlags, 0, kFlatLimit),
};
static_assert(layout::kBootGdt + sizeof(kGdt) <= layout::kBootIdt);
static_assert(kGdt.size() * 8 > kBootDataSelector);

// The hidden part of a segment register, as the CPU would load it from kGdt[selector / 8].
kvm_segment segment_from_gdt(uint16_t selector) {
  const uint64_t entry = kGdt[selector / 8];
  kvm_segment seg{};
  seg.selector = selector;
  seg.base = ((entry >> 16) & 0xffffff) | ((entry >> 32) & 0xff000000);
  const uint32_t raw_limit = static_cast<uint32_t>((entry & 0xffff) | ((entry >> 32) & 0xf0000));
  seg.g = (entry >> 55) & 1;
  seg.limit = seg.g ? (raw_limit << 12) | 0xfff : raw_limit;
  seg.type = (entry >> 40) & 0xf;
  seg.s = (entry >> 44) & 1;
  seg.dpl = (entry >> 45) & 3;
  seg.present = (entry >> 47) & 1;
  seg.avl = (entry >> 52) & 1;
  seg.l = (entry >> 53) & 1;
  seg.db = (entry >> 54) & 1;
  return seg;
}

// The task register must hold a busy TSS for VM entry; nothing uses it before the kernel loads its
// own. The PVH ABI asks for base 0, limit 0x67.
kvm_segment boot_tss() {
  kvm_segment tr{};
  tr.limit = 0x67;
  tr.type = 0xb;  // busy 32/64-bit TSS
  tr.present = 1;
  return tr;
}

kvm_segment empty_ldt() {
  kvm_segment ldt{};
  ldt.limit = 0xffff;
  ldt.type = 0x2;  // LDT
  ldt.present = 1;
  return ldt;
}

kvm_sregs base_sregs(uint16_t code_selector) {
  kvm_sregs sregs{};
  sregs.cs = segment_from_gdt(code_selector);
  const kvm_segment data = segment_from_gdt(kBootDataSelector);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = boot_tss();
  sregs.ldt = empty_ldt();
  sregs.gdt.base = layout::kBootGdt;
  sregs.gdt.limit = sizeof(kGdt) - 1;
  sregs.idt.base = layout::kBootIdt;
  sregs.idt.limit = sizeof(uint64_t) - 1;
  // KVM_SET_SREGS applies apic_base too: 0 would disable the local APIC.
  sregs.apic_base = layout::kLapicAddress | kApicBaseEnable | kApicBaseBsp;
  return sregs;
}

kvm_fpu boot_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 reset value: all exceptions masked, extended precision
  fpu.mxcsr = 0x1f80;  // SSE reset value: all exceptions masked
  return fpu;
}

std::vector<std::pair<uint32_t, uint64_t>> boot_msrs() {
  return {
      {kMsrIa32SysenterCs, 0},
      {kMsrIa32SysenterEsp, 0},
      {kMsrIa32SysenterEip, 0},
      {kMsrStar, 0},
      {kMsrLstar, 0},
      {kMsrCstar, 0},
      {kMsrSfmask, 0},
      {kMsrKernelGsBase, 0},
      {kMsrIa32MiscEnable, kMiscEnableFastStrings},
      {kMsrMtrrDefType, kMtrrEnableWriteBack},
  };
}

}  // namespace

uint64_t write_identity_page_tables(const GuestMemory& memory) {
  const uint64_t pml4 = layout::kPageTables;
  const uint64_t pdpt = pml4 + kPageSize;
  const uint64_t pd = pdpt + kPageSize;
  static_assert(layout::kPageTables + (2 + kPageDirectories) * kPageSize <= layout::kPageTablesEnd);

  std::vector<uint64_t> tables((2 + kPageDirectories) * kPageSize / sizeof(uint64_t), 0);
  uint64_t* pml4_entries = tables.data();
  uint64_t* pdpt_entries = pml4_entries + 512;
  uint64_t* pd_entries = pdpt_entries + 512;
  pml4_entries[0] = pdpt | kPtePresent | kPteWritable;
  for (uint64_t i = 0; i < kPageDirectories; ++i) {
    pdpt_entries[i] = (pd + i * kPageSize) | kPtePresent | kPteWritable;
  }
  for (uint64_t i = 0; i < kPageDirectories * 512; ++i) {
    pd_entries[i] = (i * 2 * MiB) | kPtePresent | kPteWritable | kPteLarge;
  }
  memory.write_or_throw(
      pml4, std::span(reinterpret_cast<const uint8_t*>(tables.data()), tables.size() * 8),
      "the boot page tables");
  return pml4;
}

void write_boot_gdt(const GuestMemory& memory) {
  memory.write_or_throw(layout::kBootGdt,
                        std::span(reinterpret_cast<const uint8_t*>(kGdt.data()), sizeof(kGdt)),
                        "the boot GDT");
  const uint64_t empty_idt = 0;
  memory.write_or_throw(layout::kBootIdt,
                        std::span(reinterpret_cast<const uint8_t*>(&empty_idt), sizeof(empty_idt)),
                        "the boot IDT");
}

BootCpuState long_mode_cpu_state(const GuestMemory& memory, uint64_t entry, uint64_t zero_page) {
  write_boot_gdt(memory);
  const uint64_t pml4 = write_identity_page_tables(memory);

  BootCpuState state{};
  state.regs.rip = entry;
  state.regs.rsi = zero_page;
  state.regs.rsp = layout::kBootStack;
  state.regs.rbp = layout::kBootStack;
  state.regs.rflags = kRflagsReserved;
  state.sregs = base_sregs(kBootCode64Selector);
  state.sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Wp | kCr0Pg;
  state.sregs.cr3 = pml4;
  state.sregs.cr4 = kCr4Pae;
  state.sregs.efer = kEferLme | kEferLma;
  state.fpu = boot_fpu();
  state.msrs = boot_msrs();
  return state;
}

BootCpuState pvh_cpu_state(const GuestMemory& memory, uint64_t entry, uint64_t start_info) {
  write_boot_gdt(memory);

  BootCpuState state{};
  state.regs.rip = entry;
  state.regs.rbx = start_info;
  state.regs.rsp = layout::kBootStack;
  state.regs.rflags = kRflagsReserved;
  state.sregs = base_sregs(kBootCode32Selector);
  state.sregs.cr0 = kCr0Pe | kCr0Et;
  state.fpu = boot_fpu();
  state.msrs = boot_msrs();
  return state;
}

}  // namespace vmm::boot
