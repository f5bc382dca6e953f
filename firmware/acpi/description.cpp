#include "firmware/acpi/description.hpp"

#include <set>

#include "base/util/error.hpp"
#include "firmware/acpi/aml.hpp"

namespace vmm::acpi {
namespace {

constexpr uint64_t k4GiB = uint64_t{1} << 32;

bool is_acpi_name(const std::string& name) {
  if (name.size() != 4) return false;
  if (!((name[0] >= 'A' && name[0] <= 'Z') || name[0] == '_')) return false;
  for (char c : name) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// An ACPI ID: four upper-case letters or digits (vendor) and four hex digits (product).
bool is_acpi_id(const std::string& id) {
  if (id.size() != 8) return false;
  for (size_t i = 0; i < 8; ++i) {
    char c = id[i];
    bool digit = c >= '0' && c <= '9';
    bool ok = i < 4 ? (digit || (c >= 'A' && c <= 'Z')) : (digit || (c >= 'A' && c <= 'F'));
    if (!ok) return false;
  }
  return true;
}

void validate_device(const DeviceDescription& device) {
  if (!is_acpi_name(device.name)) {
    fail("ACPI device \"{}\": name must be 4 characters of A-Z, 0-9, _ not starting with a digit",
         device.name);
  }
  if (!aml::is_eisa_id(device.hid) && !is_acpi_id(device.hid)) {
    fail(
        "ACPI device {}: _HID \"{}\" is neither a PNP ID (\"PNP0501\") nor an ACPI ID "
        "(\"LNRO0005\")",
        device.name, device.hid);
  }
  for (const auto& io : device.io) {
    if (io.length == 0 || io.length > 255) {
      fail("ACPI device {}: I/O range at {:#x} has length {} (must be 1-255)", device.name, io.base,
           io.length);
    }
    if (uint32_t{io.base} + io.length > 0x10000) {
      fail("ACPI device {}: I/O range {:#x}+{} runs past port 0xffff", device.name, io.base,
           io.length);
    }
  }
  for (const auto& mmio : device.mmio) {
    if (mmio.length == 0 || mmio.base >= k4GiB || k4GiB - mmio.base < mmio.length) {
      fail("ACPI device {}: MMIO range {:#x}+{:#x} must be non-empty and below 4 GiB", device.name,
           mmio.base, mmio.length);
    }
  }
}

void validate_vm_generation_id(const PlatformDescription& platform) {
  const VmGenerationId& id = *platform.vm_generation_id;
  // As QEMU and Firecracker place it: each 64-bit half of the ID is then one aligned, untorn read.
  if (id.id_address % 8 != 0) {
    fail("ACPI: VM Generation ID address {:#x} is not 8-byte aligned", id.id_address);
  }
  for (const auto& device : platform.devices) {
    if (device.name == kVmGenerationIdDeviceName || device.name == kGenericEventDeviceName) {
      fail("ACPI device {}: the name is taken by the VM Generation ID", device.name);
    }
    // The Generic Event Device holds its interrupt exclusively.
    for (const auto& irq : device.interrupts) {
      if (irq.gsi == id.notify_gsi) {
        fail("ACPI device {}: GSI {} is the VM Generation ID's notification interrupt", device.name,
             irq.gsi);
      }
    }
  }
  for (const auto& over : platform.interrupt_overrides) {
    if (over.gsi == id.notify_gsi) {
      fail("ACPI: GSI {} is both ISA IRQ {}'s and the VM Generation ID's notification interrupt",
           over.gsi, over.isa_irq);
    }
  }
}

}  // namespace

void validate(const PlatformDescription& platform) {
  if (platform.cpu_count == 0 || platform.cpu_count > kMaxCpus) {
    fail("ACPI: CPU count {} is outside 1-{}", platform.cpu_count, kMaxCpus);
  }
  if (platform.lapic_address >= k4GiB) {
    fail("ACPI: local APIC address {:#x} must be below 4 GiB", platform.lapic_address);
  }
  if (platform.ioapic_address >= k4GiB) {
    fail("ACPI: I/O APIC address {:#x} must be below 4 GiB", platform.ioapic_address);
  }
  // A hardware-reduced OS can only power off when both sleep registers exist.
  if (platform.sleep_control_port == 0 || platform.sleep_status_port == 0) {
    fail("ACPI: sleep control and status ports must both be set (got {:#x}, {:#x})",
         platform.sleep_control_port, platform.sleep_status_port);
  }
  if (platform.s5_sleep_type > 7) {
    fail("ACPI: S5 sleep type {} does not fit the 3-bit SLP_TYP field", platform.s5_sleep_type);
  }
  if (platform.reset_port == 0) fail("ACPI: reset port must be set");
  std::set<std::string> names;
  for (const auto& device : platform.devices) {
    validate_device(device);
    if (!names.insert(device.name).second) fail("ACPI: device name {} used twice", device.name);
  }
  std::set<uint8_t> irqs;
  for (const auto& over : platform.interrupt_overrides) {
    if (over.isa_irq > 15) {
      fail("ACPI: interrupt override for IRQ {} is not an ISA IRQ", over.isa_irq);
    }
    if (!irqs.insert(over.isa_irq).second) {
      fail("ACPI: ISA IRQ {} is overridden twice", over.isa_irq);
    }
  }
  if (platform.vm_generation_id) validate_vm_generation_id(platform);
}

}  // namespace vmm::acpi
