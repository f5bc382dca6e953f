#include "firmware/acpi/acpi.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "tests/firmware/acpi_reader.hpp"
#include "tests/firmware/sample_platform.hpp"

namespace vmm::acpi {
namespace {

using testing::byte_sum;
using testing::contains;
using testing::gas;
using ::testing::HasSubstr;
using testing::le;
using testing::madt_entries;
using testing::text;

// Guest RAM covering the low 1 MiB, where the ACPI area lives.
class AcpiTablesTest : public ::testing::Test {
 protected:
  std::vector<uint8_t> ram_ = std::vector<uint8_t>(layout::kHighMemStart, 0);
  GuestMemory memory_ = GuestMemory::from_regions({{0, ram_.size(), ram_.data()}});

  // A table in guest memory, found through a pointer the way the OS follows it.
  std::span<const uint8_t> table_at(uint64_t address) {
    auto header = memory_.slice(address, 36);
    EXPECT_TRUE(header);
    if (!header) return {};
    auto table = memory_.slice(address, le(*header, 4, 4));
    EXPECT_TRUE(table);
    return table ? *table : std::span<const uint8_t>{};
  }
};

// What the machine describes: two CPUs, COM1, RTC, i8042, pvpanic, two virtio-mmio devices and the
// VM Generation ID.
PlatformDescription machine_platform() {
  PlatformDescription platform = testing::sample_platform();
  platform.cpu_count = 2;
  platform.devices = {
      {.name = "COM1",
       .hid = "PNP0501",
       .uid = 0,
       .io = {{0x3f8, 8}},
       .mmio = {},
       .interrupts = {{4, false, false}}},
      {.name = "RTC0",
       .hid = "PNP0B00",
       .uid = 0,
       .io = {{0x70, 2}},
       .mmio = {},
       .interrupts = {{8, false, false}}},
      {.name = "PS2K",
       .hid = "PNP0303",
       .uid = 0,
       .io = {{0x60, 1}, {0x64, 1}},
       .mmio = {},
       .interrupts = {{1, false, false}}},
      {.name = "PEVT",
       .hid = "QEMU0001",
       .uid = 0,
       .io = {{0x505, 1}},
       .mmio = {},
       .interrupts = {}},
      {.name = "VR00",
       .hid = "LNRO0005",
       .uid = 0,
       .io = {},
       .mmio = {{layout::kVirtioMmioStart, 0x200}},
       .interrupts = {{5, true, false}}},
      {.name = "VR01",
       .hid = "LNRO0005",
       .uid = 1,
       .io = {},
       .mmio = {{layout::kVirtioMmioStart + layout::kVirtioMmioStride, 0x200}},
       .interrupts = {{6, false, false}}},
  };
  platform.vm_generation_id = VmGenerationId{.id_address = 0xfd000, .notify_gsi = 3};
  return platform;
}

TEST_F(AcpiTablesTest, RsdpAtAreaStartWithValidChecksums) {
  uint64_t rsdp_address = write_acpi_tables(memory_, machine_platform());
  EXPECT_EQ(rsdp_address, layout::kAcpiStart);
  EXPECT_EQ(rsdp_address % 16, 0u);
  auto rsdp = *memory_.slice(rsdp_address, 36);
  EXPECT_EQ(text(rsdp, 0, 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(rsdp.first(20)), 0);
  EXPECT_EQ(byte_sum(rsdp), 0);
  EXPECT_EQ(rsdp[15], 2);
  EXPECT_EQ(le(rsdp, 20, 4), 36u);
}

TEST_F(AcpiTablesTest, LegacyScanOfBiosAreaFindsRsdp) {
  uint64_t rsdp_address = write_acpi_tables(memory_, machine_platform());
  // Linux's fallback: "RSD PTR " on a 16-byte boundary in 0xe0000-0xfffff, valid 20-byte sum.
  uint64_t found = 0;
  for (uint64_t a = 0xe0000; a < 0x100000 && !found; a += 16) {
    auto bytes = *memory_.slice(a, 20);
    if (text(bytes, 0, 8) == "RSD PTR " && byte_sum(bytes) == 0) found = a;
  }
  EXPECT_EQ(found, rsdp_address);
}

TEST_F(AcpiTablesTest, OsCanWalkAllTables) {
  auto platform = machine_platform();
  uint64_t rsdp_address = write_acpi_tables(memory_, platform);
  auto rsdp = *memory_.slice(rsdp_address, 36);

  auto xsdt = table_at(le(rsdp, 24, 8));
  ASSERT_EQ(text(xsdt, 0, 4), "XSDT");
  EXPECT_EQ(byte_sum(xsdt), 0);
  ASSERT_EQ(xsdt.size(), 36u + 16u);

  std::span<const uint8_t> fadt, madt;
  for (size_t offset = 36; offset < xsdt.size(); offset += 8) {
    uint64_t address = le(xsdt, offset, 8);
    EXPECT_GE(address, layout::kAcpiStart);
    EXPECT_LT(address, layout::kAcpiEnd);
    auto table = table_at(address);
    EXPECT_EQ(byte_sum(table), 0) << text(table, 0, 4);
    if (text(table, 0, 4) == "FACP") fadt = table;
    if (text(table, 0, 4) == "APIC") madt = table;
  }
  ASSERT_EQ(fadt.size(), 276u);
  ASSERT_FALSE(madt.empty());

  EXPECT_EQ(fadt[8], 6);
  EXPECT_TRUE(le(fadt, 112, 4) & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(le(fadt, 112, 4) & (1u << 10)) << "RESET_REG_SUP";
  EXPECT_EQ(gas(fadt, 244).address, 0x600u);
  EXPECT_EQ(gas(fadt, 256).address, 0x601u);
  EXPECT_EQ(gas(fadt, 116).address, 0x64u);
  EXPECT_EQ(fadt[128], 0xfe);

  int lapics = 0;
  for (const auto& e : madt_entries(madt)) {
    if (e.type == 0) {
      EXPECT_EQ(e.bytes[3], lapics++);
    }
    if (e.type == 1) {
      EXPECT_EQ(le(e.bytes, 4, 4), layout::kIoapicAddress);
    }
  }
  EXPECT_EQ(lapics, 2);
  EXPECT_EQ(le(madt, 36, 4), layout::kLapicAddress);

  auto dsdt = table_at(le(fadt, 140, 8));
  ASSERT_EQ(text(dsdt, 0, 4), "DSDT");
  EXPECT_EQ(byte_sum(dsdt), 0);
  for (const char* name :
       {"COM1", "RTC0", "PS2K", "PEVT", "VR00", "VR01", "_S5_", "LNRO0005", "QEMU0001"}) {
    EXPECT_TRUE(contains(dsdt, name)) << name;
  }
  // EISA IDs for the PNP devices (DWordPrefix + compressed ID).
  EXPECT_TRUE(contains(dsdt, std::string_view("\x0c\x41\xd0\x05\x01", 5)));  // PNP0501
  EXPECT_TRUE(contains(dsdt, std::string_view("\x0c\x41\xd0\x0b\x00", 5)));  // PNP0B00
  EXPECT_TRUE(contains(dsdt, std::string_view("\x0c\x41\xd0\x03\x03", 5)));  // PNP0303
}

TEST_F(AcpiTablesTest, ManyCpusStillFit) {
  auto platform = machine_platform();
  platform.cpu_count = kMaxCpus;
  EXPECT_EQ(write_acpi_tables(memory_, platform), layout::kAcpiStart);
}

TEST_F(AcpiTablesTest, ThrowsWhenTablesDoNotFit) {
  auto platform = machine_platform();
  // ~200 devices with 100 interrupt descriptors each: ~180 KiB of DSDT for a 120 KiB area.
  for (int i = 0; i < 200; ++i) {
    DeviceDescription device{.name = fmt::format("D{:03}", i),
                             .hid = "LNRO0005",
                             .uid = static_cast<uint32_t>(i),
                             .io = {},
                             .mmio = {},
                             .interrupts = {}};
    device.interrupts.assign(100, Interrupt{5, true, false});
    platform.devices.push_back(device);
  }
  try {
    write_acpi_tables(memory_, platform);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("do not fit"));
    EXPECT_THAT(e.what(), HasSubstr("DSDT"));
  }
}

TEST_F(AcpiTablesTest, ThrowsWhenAreaIsOutsideRam) {
  std::vector<uint8_t> small(layout::kLowRamEnd);
  auto memory = GuestMemory::from_regions({{0, small.size(), small.data()}});
  EXPECT_THROW(write_acpi_tables(memory, machine_platform()), Error);
}

TEST_F(AcpiTablesTest, InvalidDescriptionIsRejectedBeforeWriting) {
  auto platform = machine_platform();
  platform.cpu_count = 0;
  EXPECT_THROW(write_acpi_tables(memory_, platform), Error);
  EXPECT_EQ(text(ram_, layout::kAcpiStart, 8), std::string(8, '\0'));
}

// Disassembles the DSDT with iasl (Debian package acpica-tools) when it is installed: the
// strongest check that the AML is well-formed.
TEST_F(AcpiTablesTest, IaslDisassemblesDsdt) {
  if (std::system("command -v iasl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "iasl not installed (apt-get install acpica-tools); DSDT not disassembled";
  }
  uint64_t rsdp_address = write_acpi_tables(memory_, machine_platform());
  auto xsdt = table_at(le(*memory_.slice(rsdp_address, 36), 24, 8));
  auto fadt = table_at(le(xsdt, 36, 8));
  auto dsdt = table_at(le(fadt, 140, 8));

  char dir_template[] = "/tmp/vmm-acpi-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  std::filesystem::path dir = dir_template;
  {
    std::ofstream out(dir / "dsdt.aml", std::ios::binary);
    out.write(reinterpret_cast<const char*>(dsdt.data()),
              static_cast<std::streamsize>(dsdt.size()));
  }
  std::string command = "cd " + dir.string() + " && iasl -d dsdt.aml >iasl.log 2>&1";
  int status = std::system(command.c_str());
  std::stringstream dsl;
  dsl << std::ifstream(dir / "dsdt.dsl").rdbuf();
  std::stringstream log;
  log << std::ifstream(dir / "iasl.log").rdbuf();
  std::filesystem::remove_all(dir);
  ASSERT_EQ(status, 0) << log.str();

  std::string text = dsl.str();
  EXPECT_THAT(text, HasSubstr("Scope (\\_SB)"));
  EXPECT_THAT(text, HasSubstr("Device (COM1)"));
  EXPECT_THAT(text, HasSubstr("EisaId (\"PNP0501\")"));
  EXPECT_THAT(text, HasSubstr("EisaId (\"PNP0B00\")"));
  EXPECT_THAT(text, HasSubstr("EisaId (\"PNP0303\")"));
  EXPECT_THAT(text, HasSubstr("Name (_HID, \"LNRO0005\")"));
  EXPECT_THAT(text, HasSubstr("IO (Decode16,\n                    0x03F8,"));
  EXPECT_THAT(text, HasSubstr("Memory32Fixed (ReadWrite,\n                    0xD0000000,"));
  EXPECT_THAT(text, HasSubstr("Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive, ,, )"));
  EXPECT_THAT(text, HasSubstr("Name (_CID, \"VMGENCTR\")"));
  EXPECT_THAT(text, HasSubstr("Method (ADDR, 0, NotSerialized)"));
  EXPECT_THAT(text, HasSubstr("Name (_HID, \"ACPI0013\" /* Generic Event Device */)"));
  EXPECT_THAT(text, HasSubstr("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"));
  EXPECT_THAT(text, HasSubstr("Method (_EVT, 1, NotSerialized)"));
  EXPECT_THAT(text, HasSubstr("If ((Arg0 == 0x03))"));
  EXPECT_THAT(text, HasSubstr("Notify (\\_SB.VGEN, 0x80)"));
  EXPECT_THAT(text, HasSubstr("Name (_S5, Package (0x04)"));
  EXPECT_THAT(log.str(), ::testing::Not(HasSubstr("Error")));
}

}  // namespace
}  // namespace vmm::acpi
