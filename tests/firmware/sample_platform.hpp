#pragma once

#include "firmware/acpi/description.hpp"

namespace vmm::acpi::testing {

// A small valid platform shared by the firmware tests: four CPUs, an i8042, COM1 and one
// virtio-mmio device.
inline PlatformDescription sample_platform() {
  return PlatformDescription{
      .cpu_count = 4,
      .lapic_address = 0xfee00000,
      .ioapic_address = 0xfec00000,
      .ioapic_id = 0,
      .ioapic_gsi_base = 0,
      .sleep_control_port = 0x600,
      .sleep_status_port = 0x601,
      .s5_sleep_type = 5,
      .reset_port = 0x64,
      .reset_value = 0xfe,
      .i8042_present = true,
      .rtc_century_register = 0x32,
      .devices = {{.name = "COM1",
                   .hid = "PNP0501",
                   .uid = 0,
                   .io = {{0x3f8, 8}},
                   .mmio = {},
                   .interrupts = {{4, false, false}}},
                  {.name = "VR00",
                   .hid = "LNRO0005",
                   .uid = 0,
                   .io = {},
                   .mmio = {{0xd0000000, 0x200}},
                   .interrupts = {{5, true, false}}}},
      .interrupt_overrides = {},
      .vm_generation_id = std::nullopt,
  };
}

}  // namespace vmm::acpi::testing
