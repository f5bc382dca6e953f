#include "firmware/acpi/tables.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "firmware/acpi/aml.hpp"
#include "tests/firmware/acpi_reader.hpp"
#include "tests/firmware/sample_platform.hpp"

namespace vmm::acpi {
namespace {

using testing::byte_sum;
using testing::contains;
using testing::gas;
using testing::le;
using testing::madt_entries;
using testing::text;

PlatformDescription platform() {
  return testing::sample_platform();
}

void expect_header(std::span<const uint8_t> table, std::string_view signature, uint8_t revision) {
  ASSERT_GE(table.size(), 36u);
  EXPECT_EQ(text(table, 0, 4), signature);
  EXPECT_EQ(le(table, 4, 4), table.size());
  EXPECT_EQ(table[8], revision);
  EXPECT_EQ(byte_sum(table), 0) << signature << " checksum";
  EXPECT_EQ(text(table, 10, 6), "VMM   ");
}

TEST(AcpiChecksum, MakesSumZero) {
  const uint8_t bytes[] = {0x10, 0x20, 0xff};
  uint8_t fix = checksum(bytes);
  EXPECT_EQ(static_cast<uint8_t>(0x10 + 0x20 + 0xff + fix), 0);
  EXPECT_EQ(checksum({}), 0);
}

TEST(AcpiRsdp, Revision2WithBothChecksums) {
  Bytes rsdp = build_rsdp(0xe0040);
  ASSERT_EQ(rsdp.size(), 36u);
  EXPECT_EQ(text(rsdp, 0, 8), "RSD PTR ");
  EXPECT_EQ(byte_sum(std::span(rsdp).first(20)), 0);
  EXPECT_EQ(byte_sum(rsdp), 0);
  EXPECT_EQ(rsdp[15], 2);           // revision
  EXPECT_EQ(le(rsdp, 16, 4), 0u);   // RsdtAddress
  EXPECT_EQ(le(rsdp, 20, 4), 36u);  // length
  EXPECT_EQ(le(rsdp, 24, 8), 0xe0040u);
}

TEST(AcpiXsdt, ListsTableAddresses) {
  const uint64_t addresses[] = {0xe0100, 0x1234567890};
  Bytes xsdt = build_xsdt(addresses);
  expect_header(xsdt, "XSDT", 1);
  ASSERT_EQ(xsdt.size(), 36u + 16u);
  EXPECT_EQ(le(xsdt, 36, 8), 0xe0100u);
  EXPECT_EQ(le(xsdt, 44, 8), 0x1234567890u);
}

TEST(AcpiFadt, HardwareReducedWithSleepAndResetRegisters) {
  Bytes fadt = build_fadt(platform(), 0xe1000);
  expect_header(fadt, "FACP", 6);
  ASSERT_EQ(fadt.size(), 276u);
  EXPECT_EQ(fadt[131], 3);  // minor version
  uint32_t flags = static_cast<uint32_t>(le(fadt, 112, 4));
  EXPECT_TRUE(flags & (1u << 20)) << "HW_REDUCED_ACPI";
  EXPECT_TRUE(flags & (1u << 10)) << "RESET_REG_SUP";
  EXPECT_EQ(le(fadt, 109, 2), (1u << 1) | (1u << 2));  // 8042 present, VGA not present
  EXPECT_EQ(le(fadt, 108, 1), 0x32u);                  // CENTURY: CMOS index of the century
  EXPECT_EQ(le(fadt, 40, 4), 0u);                      // 32-bit DSDT unused
  EXPECT_EQ(le(fadt, 140, 8), 0xe1000u);               // X_DSDT
  // No fixed PM1 blocks on a hardware-reduced platform.
  EXPECT_EQ(le(fadt, 56, 4), 0u);
  EXPECT_EQ(le(fadt, 64, 4), 0u);
  EXPECT_EQ(gas(fadt, 172).address, 0u);

  auto reset = gas(fadt, 116);
  EXPECT_EQ(reset.space, 1);  // System I/O
  EXPECT_EQ(reset.bit_width, 8);
  EXPECT_EQ(reset.access_size, 1);
  EXPECT_EQ(reset.address, 0x64u);
  EXPECT_EQ(fadt[128], 0xfe);

  auto control = gas(fadt, 244);
  EXPECT_EQ(control.space, 1);
  EXPECT_EQ(control.bit_width, 8);
  EXPECT_EQ(control.bit_offset, 0);
  EXPECT_EQ(control.access_size, 1);
  EXPECT_EQ(control.address, 0x600u);
  auto status = gas(fadt, 256);
  EXPECT_EQ(status.space, 1);
  EXPECT_EQ(status.bit_width, 8);
  EXPECT_EQ(status.address, 0x601u);
  EXPECT_EQ(text(fadt, 268, 8), "VMM     ");
}

TEST(AcpiFadt, NoI8042) {
  auto p = platform();
  p.i8042_present = false;
  Bytes fadt = build_fadt(p, 0xe1000);
  EXPECT_EQ(le(fadt, 109, 2), 1u << 2);
}

TEST(AcpiMadt, OneLocalApicPerCpuIoApicAndNmi) {
  Bytes madt = build_madt(platform());
  expect_header(madt, "APIC", 5);
  EXPECT_EQ(le(madt, 36, 4), 0xfee00000u);
  EXPECT_EQ(le(madt, 40, 4), 0u);  // no PCAT_COMPAT
  auto entries = madt_entries(madt);
  size_t total = 44;
  for (const auto& e : entries) total += e.bytes.size();
  EXPECT_EQ(total, madt.size());

  std::vector<uint8_t> apic_ids;
  int ioapics = 0, nmis = 0;
  for (const auto& e : entries) {
    switch (e.type) {
      case 0:
        ASSERT_EQ(e.bytes.size(), 8u);
        EXPECT_EQ(e.bytes[2], e.bytes[3]);  // UID == APIC ID
        EXPECT_EQ(le(e.bytes, 4, 4), 1u);   // enabled
        apic_ids.push_back(e.bytes[3]);
        break;
      case 1:
        ++ioapics;
        ASSERT_EQ(e.bytes.size(), 12u);
        EXPECT_EQ(e.bytes[2], 0);                   // IOAPIC ID
        EXPECT_EQ(le(e.bytes, 4, 4), 0xfec00000u);  // address
        EXPECT_EQ(le(e.bytes, 8, 4), 0u);           // GSI base
        break;
      case 4:
        ++nmis;
        ASSERT_EQ(e.bytes.size(), 6u);
        EXPECT_EQ(e.bytes[2], 0xff);  // all processors
        EXPECT_EQ(e.bytes[5], 1);     // LINT1
        break;
      default: ADD_FAILURE() << "unexpected MADT entry type " << int{e.type};
    }
  }
  EXPECT_THAT(apic_ids, ::testing::ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(ioapics, 1);
  EXPECT_EQ(nmis, 1);
}

TEST(AcpiMadt, X2ApicEntriesFromId255) {
  auto p = platform();
  p.cpu_count = 300;
  Bytes madt = build_madt(p);
  expect_header(madt, "APIC", 5);
  std::vector<uint32_t> xapic, x2apic;
  int x2nmis = 0;
  for (const auto& e : madt_entries(madt)) {
    if (e.type == 0) xapic.push_back(e.bytes[3]);
    if (e.type == 9) {
      ASSERT_EQ(e.bytes.size(), 16u);
      EXPECT_EQ(le(e.bytes, 8, 4), 1u);                  // enabled
      EXPECT_EQ(le(e.bytes, 12, 4), le(e.bytes, 4, 4));  // UID == x2APIC ID
      x2apic.push_back(static_cast<uint32_t>(le(e.bytes, 4, 4)));
    }
    if (e.type == 0xa) {
      ++x2nmis;
      EXPECT_EQ(le(e.bytes, 4, 4), 0xffffffffu);
      EXPECT_EQ(e.bytes[8], 1);
    }
  }
  ASSERT_EQ(xapic.size(), 255u);
  EXPECT_EQ(xapic.back(), 254u);
  ASSERT_EQ(x2apic.size(), 45u);
  EXPECT_EQ(x2apic.front(), 255u);
  EXPECT_EQ(x2apic.back(), 299u);
  EXPECT_EQ(x2nmis, 1);
}

TEST(AcpiMadt, InterruptSourceOverrides) {
  auto p = platform();
  p.interrupt_overrides = {{.isa_irq = 0, .gsi = 2, .level_triggered = false, .active_low = false},
                           {.isa_irq = 9, .gsi = 9, .level_triggered = true, .active_low = true}};
  std::vector<std::vector<uint8_t>> overrides;
  for (const auto& e : madt_entries(build_madt(p))) {
    if (e.type == 2) overrides.push_back(e.bytes);
  }
  ASSERT_EQ(overrides.size(), 2u);
  EXPECT_THAT(overrides[0], ::testing::ElementsAre(2, 10, 0, 0, 2, 0, 0, 0, 0x05, 0x00));
  EXPECT_THAT(overrides[1], ::testing::ElementsAre(2, 10, 0, 9, 9, 0, 0, 0, 0x0f, 0x00));
}

TEST(AcpiDsdt, DevicesAndS5) {
  Bytes dsdt = build_dsdt(platform());
  expect_header(dsdt, "DSDT", 2);
  auto body = std::span<const uint8_t>(dsdt).subspan(36);
  // The body starts with Scope (\_SB_).
  EXPECT_EQ(body[0], 0x10);
  EXPECT_TRUE(contains(body, "\\_SB_"));
  // Device (COM1) with its EISA ID _HID, and Device (VR00) with a string _HID.
  EXPECT_TRUE(contains(body, "\x5b\x82"));
  EXPECT_TRUE(contains(body, "COM1"));
  EXPECT_TRUE(contains(body, aml::name("_HID", aml::dword(0x0105d041))));
  EXPECT_TRUE(contains(body, "VR00"));
  EXPECT_TRUE(contains(body, aml::name("_HID", aml::string("LNRO0005"))));
  const uint32_t com_gsi[] = {4};
  const uint32_t vr_gsi[] = {5};
  const Bytes com_crs[] = {
      aml::io_port(0x3f8, 0x3f8, 1, 8),
      aml::extended_interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, com_gsi)};
  const Bytes vr_crs[] = {
      aml::memory32_fixed(0xd0000000, 0x200),
      aml::extended_interrupt(aml::Trigger::kLevel, aml::Polarity::kActiveHigh, vr_gsi)};
  EXPECT_TRUE(contains(body, aml::name("_CRS", aml::resource_template(com_crs))));
  EXPECT_TRUE(contains(body, aml::name("_CRS", aml::resource_template(vr_crs))));
  // Name (_S5_, Package () {5, 0, 0, 0}) at the root, after the scope.
  const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0, 0, 0};
  ASSERT_GE(body.size(), sizeof(s5));
  EXPECT_TRUE(std::equal(std::begin(s5), std::end(s5), body.end() - sizeof(s5)));
}

TEST(AcpiDsdt, VmGenerationIdAndItsEventDevice) {
  auto p = platform();
  EXPECT_FALSE(contains(build_dsdt(p), "VGEN"));
  EXPECT_FALSE(contains(build_dsdt(p), "ACPI0013"));

  p.vm_generation_id = VmGenerationId{.id_address = 0xfd000, .notify_gsi = 3};
  Bytes dsdt = build_dsdt(p);
  expect_header(dsdt, "DSDT", 2);
  // iasl -on output for
  //   Device (VGEN) {
  //     Name (_HID, EisaId ("VMM0001"))
  //     Name (_CID, "VMGENCTR")
  //     Method (ADDR, 0, NotSerialized) { Return (Package () { 0x000FD000, 0 }) } }
  //   Device (GED_) {
  //     Name (_HID, "ACPI0013")
  //     Name (_UID, 0)
  //     Name (_CRS, ResourceTemplate () {
  //       Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {3} })
  //     Method (_EVT, 1, NotSerialized) {
  //       If (LEqual (Arg0, 3)) { Notify (\_SB.VGEN, 0x80) } } }
  const uint8_t devices[] = {
      0x5b, 0x82, 0x2f, 'V',  'G',  'E',  'N',                          // Device (VGEN)
      0x08, '_',  'H',  'I',  'D',  0x0c, 0x59, 0xad, 0x00, 0x01,       // _HID VMM0001
      0x08, '_',  'C',  'I',  'D',  0x0d, 'V',  'M',  'G',  'E',  'N',  // _CID
      'C',  'T',  'R',  0x00,                                           //
      0x14, 0x10, 'A',  'D',  'D',  'R',  0x00,                         // Method (ADDR, 0)
      0xa4, 0x12, 0x08, 0x02, 0x0c, 0x00, 0xd0, 0x0f, 0x00, 0x00,       // Return (Package)
      0x5b, 0x82, 0x49, 0x04, 'G',  'E',  'D',  '_',                    // Device (GED_)
      0x08, '_',  'H',  'I',  'D',  0x0d, 'A',  'C',  'P',  'I',  '0',  // _HID ACPI0013
      '0',  '1',  '3',  0x00,                                           //
      0x08, '_',  'U',  'I',  'D',  0x00,                               // _UID 0
      0x08, '_',  'C',  'R',  'S',  0x11, 0x0e, 0x0a, 0x0b,             // _CRS
      0x89, 0x06, 0x00, 0x03, 0x01, 0x03, 0x00, 0x00, 0x00,             // Interrupt {3}
      0x79, 0x00,                                                       // end tag
      0x14, 0x19, '_',  'E',  'V',  'T',  0x01,                         // Method (_EVT, 1)
      0xa0, 0x12, 0x93, 0x68, 0x0a, 0x03,                               // If (LEqual)
      0x86, '\\', 0x2e, '_',  'S',  'B',  '_',  'V',  'G',  'E',  'N',  // Notify
      0x0a, 0x80};
  EXPECT_TRUE(contains(dsdt, devices));
  // Inside \_SB_, whose PkgLength covers them, before \_S5_.
  auto body = std::span<const uint8_t>(dsdt).subspan(36);
  ASSERT_EQ(body[0], 0x10);
  const uint64_t scope_length = (body[1] & 0x0f) | (uint64_t{body[2]} << 4);
  ASSERT_EQ(body[1] >> 6, 1);  // two-byte PkgLength
  auto scope = body.subspan(1, scope_length);
  EXPECT_TRUE(std::equal(std::begin(devices), std::end(devices), scope.end() - sizeof(devices)));
}

TEST(AcpiDsdt, VmGenerationIdAboveFourGiB) {
  auto p = platform();
  p.vm_generation_id = VmGenerationId{.id_address = 0x1'2345'6788, .notify_gsi = 3};
  // Return (Package () { 0x23456788, One })
  const uint8_t address[] = {0xa4, 0x12, 0x08, 0x02, 0x0c, 0x88, 0x67, 0x45, 0x23, 0x01};
  EXPECT_TRUE(contains(build_dsdt(p), address));
}

}  // namespace
}  // namespace vmm::acpi
