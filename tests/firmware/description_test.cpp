#include "firmware/acpi/description.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>

#include "base/util/error.hpp"
#include "tests/firmware/sample_platform.hpp"

namespace vmm::acpi {
namespace {

using ::testing::HasSubstr;

PlatformDescription valid() {
  return testing::sample_platform();
}

// Applies `change` to a valid description and expects validate() to fail mentioning `message`.
void expect_invalid(const std::function<void(PlatformDescription&)>& change,
                    const std::string& message) {
  auto platform = valid();
  change(platform);
  try {
    validate(platform);
    ADD_FAILURE() << "expected an error containing \"" << message << "\"";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(message));
  }
}

TEST(AcpiDescription, AcceptsMachineDescription) {
  EXPECT_NO_THROW(validate(valid()));
  auto platform = valid();
  platform.cpu_count = kMaxCpus;
  platform.devices[0].io[0] = {0xfff8, 8};             // ends exactly at port 0xffff
  platform.devices[1].mmio[0] = {0xfffff000, 0x1000};  // ends exactly at 4 GiB
  platform.devices.push_back(
      {.name = "_X1_", .hid = "ACPI0007", .uid = 0, .io = {}, .mmio = {}, .interrupts = {}});
  EXPECT_NO_THROW(validate(platform));
}

TEST(AcpiDescription, RejectsBadPlatformFields) {
  expect_invalid([](auto& p) { p.cpu_count = 0; }, "CPU count 0");
  expect_invalid([](auto& p) { p.cpu_count = kMaxCpus + 1; }, "CPU count 4097");
  expect_invalid([](auto& p) { p.lapic_address = uint64_t{1} << 32; }, "local APIC address");
  expect_invalid([](auto& p) { p.ioapic_address = uint64_t{1} << 40; }, "I/O APIC address");
  expect_invalid([](auto& p) { p.sleep_status_port = 0; }, "sleep control and status ports");
  expect_invalid([](auto& p) { p.s5_sleep_type = 8; }, "S5 sleep type 8");
  expect_invalid([](auto& p) { p.reset_port = 0; }, "reset port");
}

TEST(AcpiDescription, RejectsBadDevices) {
  expect_invalid([](auto& p) { p.devices[0].name = "COM"; }, "ACPI device \"COM\"");
  expect_invalid([](auto& p) { p.devices[0].name = "com1"; }, "\"com1\": name must be 4");
  expect_invalid([](auto& p) { p.devices[0].name = "1COM"; }, "\"1COM\"");
  expect_invalid([](auto& p) { p.devices[1].name = "COM1"; }, "device name COM1 used twice");
  expect_invalid([](auto& p) { p.devices[0].hid = "PNP501"; }, "_HID \"PNP501\"");
  expect_invalid([](auto& p) { p.devices[1].hid = "lnro0005"; }, "_HID \"lnro0005\"");
  expect_invalid([](auto& p) { p.devices[1].hid = "LNRO000G"; }, "_HID \"LNRO000G\"");
  expect_invalid([](auto& p) { p.devices[0].io[0].length = 0; }, "COM1: I/O range at 0x3f8");
  expect_invalid([](auto& p) { p.devices[0].io[0].length = 256; }, "length 256");
  expect_invalid([](auto& p) { p.devices[0].io[0] = {0xfff9, 8}; }, "runs past port 0xffff");
  expect_invalid(
      [](auto& p) {
        p.devices[1].mmio[0] = {0xfffff000, 0x1001};
      },
      "VR00: MMIO range 0xfffff000+0x1001");
  expect_invalid([](auto& p) { p.devices[1].mmio[0] = {uint64_t{1} << 32, 0x200}; }, "below 4 GiB");
  expect_invalid([](auto& p) { p.devices[1].mmio[0].length = 0; }, "non-empty");
}

TEST(AcpiDescription, RejectsBadInterruptOverrides) {
  expect_invalid(
      [](auto& p) {
        p.interrupt_overrides = {{16, 16, false, false}};
      },
      "IRQ 16 is not an ISA IRQ");
  expect_invalid(
      [](auto& p) {
        p.interrupt_overrides = {{0, 2, false, false}, {0, 3, false, false}};
      },
      "ISA IRQ 0 is overridden twice");
}

TEST(AcpiDescription, AcceptsVmGenerationId) {
  auto platform = valid();
  platform.vm_generation_id = VmGenerationId{.id_address = 0x1'0000'0008, .notify_gsi = 3};
  EXPECT_NO_THROW(validate(platform));
}

TEST(AcpiDescription, RejectsBadVmGenerationId) {
  auto with_id = [](PlatformDescription& p) {
    p.vm_generation_id = VmGenerationId{.id_address = 0xfd000, .notify_gsi = 3};
  };
  expect_invalid(
      [&](auto& p) {
        with_id(p);
        p.vm_generation_id->id_address = 0xfd004;
      },
      "VM Generation ID address 0xfd004 is not 8-byte aligned");
  expect_invalid(
      [&](auto& p) {
        with_id(p);
        p.devices[0].interrupts[0].gsi = 3;
      },
      "ACPI device COM1: GSI 3 is the VM Generation ID's notification interrupt");
  expect_invalid(
      [&](auto& p) {
        with_id(p);
        p.interrupt_overrides = {{0, 3, false, false}};
      },
      "GSI 3 is both ISA IRQ 0's and the VM Generation ID's");
  expect_invalid(
      [&](auto& p) {
        with_id(p);
        p.devices[1].name = "GED_";
      },
      "ACPI device GED_: the name is taken by the VM Generation ID");
  expect_invalid(
      [&](auto& p) {
        with_id(p);
        p.devices[1].name = "VGEN";
      },
      "ACPI device VGEN");
}

}  // namespace
}  // namespace vmm::acpi
