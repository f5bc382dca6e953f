#include "firmware/mptable.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "firmware/acpi/acpi.hpp"
#include "tests/firmware/acpi_reader.hpp"
#include "tests/firmware/sample_platform.hpp"

namespace vmm::firmware {
namespace {

using acpi::testing::byte_sum;
using acpi::testing::le;
using acpi::testing::madt_entries;
using acpi::testing::text;
using ::testing::HasSubstr;

// The MP table read back the way Linux reads it (arch/x86/kernel/mpparse.c): raw fields at the MP
// 1.4 spec's offsets, independent of the structs the writer uses.
struct MpProcessor {
  uint8_t apic_id, apic_version, flags;
  uint32_t signature, features;
};
struct MpInterrupt {
  uint8_t interrupt_type;
  uint16_t flags;
  uint8_t source_bus, source_irq, destination_apic, destination_pin;
  bool operator==(const MpInterrupt&) const = default;
};
struct MpTable {
  uint64_t pointer_address = 0;
  uint16_t entry_count = 0;
  uint64_t entries_seen = 0;
  uint32_t lapic_address = 0;
  std::vector<MpProcessor> processors;
  std::vector<std::string> buses;  // "<id>:<type>"
  std::vector<std::vector<uint8_t>> ioapics;
  std::vector<MpInterrupt> io_interrupts;
  std::vector<MpInterrupt> local_interrupts;
};

// Where Linux looks for the floating pointer (smp_scan_config): the first KiB, the last KiB of
// base memory, the BIOS ROM area; "_MP_" on a 16-byte boundary, length 1, a zero sum, revision 1
// or 4.
std::optional<uint64_t> find_floating_pointer(const GuestMemory& memory) {
  const std::pair<uint64_t, uint64_t> windows[] = {
      {0, 0x400}, {639 * 0x400, 0x400}, {0xf0000, 0x10000}};
  for (const auto& [base, size] : windows) {
    for (uint64_t address = base; address < base + size; address += 16) {
      const auto bytes = memory.slice(address, 16);
      if (!bytes) continue;
      if (text(*bytes, 0, 4) == "_MP_" && (*bytes)[8] == 1 && byte_sum(*bytes) == 0 &&
          ((*bytes)[9] == 1 || (*bytes)[9] == 4)) {
        return address;
      }
    }
  }
  return std::nullopt;
}

// Parses the table as smp_read_mpc does; a wrong signature, checksum, revision or entry is a test
// failure.
MpTable read_mp_table(const GuestMemory& memory) {
  MpTable table;
  const auto pointer_address = find_floating_pointer(memory);
  EXPECT_TRUE(pointer_address) << "no MP floating pointer where Linux scans";
  if (!pointer_address) return table;
  table.pointer_address = *pointer_address;
  const auto pointer = *memory.slice(*pointer_address, 16);
  EXPECT_EQ(pointer[9], 4) << "MP spec revision 1.4";
  EXPECT_EQ(pointer[11], 0) << "feature byte 1: 0 means a configuration table is present";
  const uint64_t config = le(pointer, 4, 4);
  const auto header = memory.slice(config, 44);
  EXPECT_TRUE(header) << fmt::format("configuration table pointer {:#x}", config);
  if (!header) return table;
  EXPECT_EQ(text(*header, 0, 4), "PCMP");
  const uint64_t length = le(*header, 4, 2);
  EXPECT_EQ((*header)[6], 4) << "MP spec revision 1.4";
  const auto bytes = memory.slice(config, length);
  EXPECT_TRUE(bytes);
  if (!bytes) return table;
  EXPECT_EQ(byte_sum(*bytes), 0) << "configuration table checksum";
  table.entry_count = static_cast<uint16_t>(le(*bytes, 34, 2));
  table.lapic_address = static_cast<uint32_t>(le(*bytes, 36, 4));
  EXPECT_EQ(le(*bytes, 40, 2), 0u) << "no extended table";

  auto interrupt = [](std::span<const uint8_t> e) {
    return MpInterrupt{e[1], static_cast<uint16_t>(le(e, 2, 2)), e[4], e[5], e[6], e[7]};
  };
  for (uint64_t offset = 44; offset < length; ++table.entries_seen) {
    const uint64_t size = (*bytes)[offset] == 0 ? 20 : 8;
    if (offset + size > length) {
      ADD_FAILURE() << "entry at offset " << offset << " runs past the table's end";
      break;
    }
    const auto e = bytes->subspan(offset, size);
    switch (e[0]) {
      case 0:
        table.processors.push_back({e[1], e[2], e[3], static_cast<uint32_t>(le(e, 4, 4)),
                                    static_cast<uint32_t>(le(e, 8, 4))});
        break;
      case 1: table.buses.push_back(fmt::format("{}:{}", e[1], text(e, 2, 6))); break;
      case 2: table.ioapics.emplace_back(e.begin(), e.end()); break;
      case 3: table.io_interrupts.push_back(interrupt(e)); break;
      case 4: table.local_interrupts.push_back(interrupt(e)); break;
      default: ADD_FAILURE() << "unknown entry type " << int{e[0]} << " at offset " << offset;
    }
    offset += size;
  }
  return table;
}

constexpr uint8_t kIsaBus = 0;
constexpr uint16_t kConforms = 0;
constexpr uint16_t kEdgeHigh = 0x5;
constexpr uint16_t kLevelHigh = 0xd;
constexpr uint16_t kLevelLow = 0xf;

// The I/O interrupt entry of ISA IRQ `irq` (the ISA bus), or nullopt.
std::optional<MpInterrupt> isa_route(const MpTable& table, uint8_t irq) {
  std::optional<MpInterrupt> found;
  for (const auto& entry : table.io_interrupts) {
    if (entry.source_bus != kIsaBus || entry.source_irq != irq) continue;
    EXPECT_FALSE(found) << "ISA IRQ " << int{irq} << " is routed twice";
    found = entry;
  }
  return found;
}

// Guest RAM covering the low 1 MiB, where the ACPI tables and the MP table live.
class MpTableTest : public ::testing::Test {
 protected:
  std::vector<uint8_t> ram_ = std::vector<uint8_t>(layout::kHighMemStart, 0);
  GuestMemory memory_ = GuestMemory::from_regions({{0, ram_.size(), ram_.data()}});
};

class MpTableCpusTest : public MpTableTest, public ::testing::WithParamInterface<uint32_t> {};

// 1, 2, vmm's --cpus limit (vmm/include/vmm/machine_config.hpp) and the table's own.
INSTANTIATE_TEST_SUITE_P(Cpus, MpTableCpusTest, ::testing::Values(1u, 2u, 254u, kMaxMpTableCpus),
                         [](const auto& info) { return fmt::format("{}cpus", info.param); });

TEST_P(MpTableCpusTest, OneEnabledProcessorPerCpuTheFirstTheBootProcessor) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.cpu_count = GetParam();
  write_mp_table(memory_, platform);
  const MpTable table = read_mp_table(memory_);

  EXPECT_EQ(table.pointer_address, layout::kMpTableStart);
  EXPECT_EQ(table.lapic_address, platform.lapic_address);
  ASSERT_EQ(table.processors.size(), GetParam());
  for (uint32_t i = 0; i < GetParam(); ++i) {
    const MpProcessor& cpu = table.processors[i];
    EXPECT_EQ(cpu.apic_id, i);
    EXPECT_EQ(cpu.flags, i == 0 ? 0x3 : 0x1) << "APIC ID " << i << ": enabled, BSP only on 0";
    EXPECT_EQ(cpu.apic_version, 0x14);
    EXPECT_EQ(cpu.signature, 0x600u) << "family 6";
    EXPECT_EQ(cpu.features, 0x201u) << "FPU and APIC";
  }
  EXPECT_EQ(table.entry_count, table.entries_seen);
}

TEST_F(MpTableTest, IsaBusAndIoApic) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.ioapic_id = 3;
  write_mp_table(memory_, platform);
  const MpTable table = read_mp_table(memory_);

  EXPECT_THAT(table.buses, ::testing::ElementsAre("0:ISA   "));
  ASSERT_EQ(table.ioapics.size(), 1u);
  const auto& ioapic = table.ioapics[0];
  EXPECT_EQ(ioapic[1], 3) << "id";
  EXPECT_EQ(ioapic[2], 0x11) << "version";
  EXPECT_EQ(ioapic[3], 1) << "usable";
  EXPECT_EQ(le(ioapic, 4, 4), platform.ioapic_address);
  for (const auto& entry : table.io_interrupts) EXPECT_EQ(entry.destination_apic, 3);
}

TEST_F(MpTableTest, LocalInterruptsExtIntOnLint0AndNmiOnLint1OfEveryCpu) {
  write_mp_table(memory_, acpi::testing::sample_platform());
  EXPECT_THAT(read_mp_table(memory_).local_interrupts,
              ::testing::ElementsAre(MpInterrupt{3, kConforms, kIsaBus, 0, 0xff, 0},
                                     MpInterrupt{1, kConforms, kIsaBus, 0, 0xff, 1}));
}

// vmm's platform has no interrupt source override (KVM routes GSI n to pin n): each ISA IRQ on the
// pin of its number, with the trigger and polarity its device has in the DSDT.
TEST_F(MpTableTest, IsaIrqsOnTheirOwnPinsWithoutOverrides) {
  const acpi::PlatformDescription platform = acpi::testing::sample_platform();  // COM1 4, VR00 5
  ASSERT_TRUE(platform.interrupt_overrides.empty());
  write_mp_table(memory_, platform);
  const MpTable table = read_mp_table(memory_);

  EXPECT_EQ(table.io_interrupts.size(), 16u);
  for (uint8_t irq = 0; irq < 16; ++irq) {
    const uint16_t flags = irq == 4 ? kEdgeHigh : irq == 5 ? kLevelHigh : kConforms;
    EXPECT_EQ(isa_route(table, irq), (MpInterrupt{0, flags, kIsaBus, irq, 0, irq})) << int{irq};
  }
}

// With overrides, the MP table routes every ISA IRQ where the MADT sends it: an overridden IRQ to
// its GSI's pin with the override's flags, any other to its own pin, and none to a pin an override
// took (IRQ 2 when IRQ 0 is on pin 2).
TEST_F(MpTableTest, IsaRoutingAgreesWithTheMadtOverrides) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.interrupt_overrides = {
      {.isa_irq = 0, .gsi = 2, .level_triggered = false, .active_low = false},
      {.isa_irq = 9, .gsi = 9, .level_triggered = true, .active_low = true}};
  // Both tables in one guest memory, as the machine writes them: neither overwrites the other.
  const uint64_t rsdp = acpi::write_acpi_tables(memory_, platform);
  write_mp_table(memory_, platform);
  const MpTable table = read_mp_table(memory_);

  EXPECT_EQ(isa_route(table, 0), (MpInterrupt{0, kEdgeHigh, kIsaBus, 0, 0, 2}));
  EXPECT_EQ(isa_route(table, 2), std::nullopt);
  EXPECT_EQ(isa_route(table, 9), (MpInterrupt{0, kLevelLow, kIsaBus, 9, 0, 9}));
  EXPECT_EQ(table.io_interrupts.size(), 15u);

  // The MADT the guest would read instead, from the RSDP through the XSDT.
  const auto xsdt_address = le(*memory_.slice(rsdp, 36), 24, 8);
  std::span<const uint8_t> madt;
  const auto xsdt = *memory_.slice(xsdt_address, le(*memory_.slice(xsdt_address, 36), 4, 4));
  for (size_t offset = 36; offset < xsdt.size(); offset += 8) {
    const uint64_t address = le(xsdt, offset, 8);
    const auto header = *memory_.slice(address, 36);
    if (text(header, 0, 4) == "APIC") madt = *memory_.slice(address, le(header, 4, 4));
  }
  ASSERT_FALSE(madt.empty());
  ASSERT_EQ(byte_sum(madt), 0);
  std::vector<bool> overridden(16), pin_taken(24);
  for (const auto& e : madt_entries(madt)) {
    if (e.type != 2) continue;
    const uint8_t irq = e.bytes[3];
    const uint64_t gsi = le(e.bytes, 4, 4);
    overridden[irq] = pin_taken[gsi] = true;
    const auto route = isa_route(table, irq);
    ASSERT_TRUE(route) << "IRQ " << int{irq};
    EXPECT_EQ(route->destination_pin, gsi) << "IRQ " << int{irq};
    EXPECT_EQ(route->flags, le(e.bytes, 8, 2)) << "IRQ " << int{irq};
  }
  for (uint8_t irq = 0; irq < 16; ++irq) {
    if (overridden[irq]) continue;
    const auto route = isa_route(table, irq);
    if (pin_taken[irq]) {
      EXPECT_EQ(route, std::nullopt) << "IRQ " << int{irq} << ": an override took its pin";
    } else {
      ASSERT_TRUE(route) << "IRQ " << int{irq};
      EXPECT_EQ(route->destination_pin, irq);
    }
  }
}

// A device interrupt beyond the ISA IRQs (a virtio device on GSI 17) gets an entry too, numbered
// by its GSI: the IRQ a kernel without ACPI is told on its command line.
TEST_F(MpTableTest, DeviceInterruptsAboveTheIsaIrqs) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.devices[1].interrupts = {{17, false, false}};
  write_mp_table(memory_, platform);
  const MpTable table = read_mp_table(memory_);

  EXPECT_EQ(table.io_interrupts.size(), 17u);
  EXPECT_EQ(isa_route(table, 17), (MpInterrupt{0, kEdgeHigh, kIsaBus, 17, 0, 17}));
  EXPECT_EQ(isa_route(table, 5), (MpInterrupt{0, kConforms, kIsaBus, 5, 0, 5}));
}

TEST_F(MpTableTest, ChecksumsCatchACorruptedByte) {
  write_mp_table(memory_, acpi::testing::sample_platform());
  ASSERT_EQ(find_floating_pointer(memory_), layout::kMpTableStart);
  const uint64_t config = le(*memory_.slice(layout::kMpTableStart, 16), 4, 4);
  const auto table = *memory_.slice(config, le(*memory_.slice(config, 44), 4, 2));
  ASSERT_EQ(byte_sum(table), 0);
  ++ram_[config + 44 + 1];  // the first processor's APIC ID
  EXPECT_NE(byte_sum(table), 0);
  ++ram_[layout::kMpTableStart + 4];  // the configuration table's address
  EXPECT_EQ(find_floating_pointer(memory_), std::nullopt);
}

TEST_F(MpTableTest, TooManyCpusForEightBitApicIds) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.cpu_count = kMaxMpTableCpus + 1;
  try {
    write_mp_table(memory_, platform);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("MP table: 256 CPUs"));
  }
}

TEST_F(MpTableTest, InterruptBeyondEightBitPins) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.devices[1].interrupts = {{256, false, false}};
  try {
    write_mp_table(memory_, platform);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("MP table: GSI 256"));
  }
}

TEST_F(MpTableTest, InvalidDescriptionIsRejected) {
  acpi::PlatformDescription platform = acpi::testing::sample_platform();
  platform.cpu_count = 0;
  EXPECT_THROW(write_mp_table(memory_, platform), Error);
}

TEST_F(MpTableTest, ThrowsWhenTheAreaIsOutsideRam) {
  std::vector<uint8_t> small(layout::kLowRamEnd);
  const GuestMemory memory = GuestMemory::from_regions({{0, small.size(), small.data()}});
  try {
    write_mp_table(memory, acpi::testing::sample_platform());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("outside guest RAM"));
  }
}

}  // namespace
}  // namespace vmm::firmware
