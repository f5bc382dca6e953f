#pragma once

#include <cstdint>
#include <string>
#include <vector>

// The plain description of a machine that the ACPI tables are built from. It names resources only
// (ports, addresses, GSIs), never device objects, so firmware/ stays independent of devices/.
namespace vmm::acpi {

struct IoRange {
  uint16_t base;
  uint16_t length;  // 1-255: an ACPI I/O descriptor holds an 8-bit length
};

struct MmioRange {
  uint64_t base;  // the range must lie below 4 GiB (Memory32Fixed)
  uint32_t length;
};

struct Interrupt {
  uint32_t gsi;
  bool level_triggered;
  bool active_low;
};

struct DeviceDescription {
  std::string name;  // 4-char ACPI name of [A-Z0-9_], not starting with a digit: "COM1", "VR00"
  std::string hid;   // PNP ID "PNP0501" (encoded as EISAID) or ACPI ID "LNRO0005" (string)
  uint32_t uid;
  std::vector<IoRange> io;
  std::vector<MmioRange> mmio;
  std::vector<Interrupt> interrupts;
};

// An ISA IRQ that is not wired to the IOAPIC pin of the same number (MADT type 2).
struct InterruptOverride {
  uint8_t isa_irq;
  uint32_t gsi;
  bool level_triggered;
  bool active_low;
};

struct PlatformDescription {
  uint32_t cpu_count;  // APIC IDs 0..cpu_count-1
  uint64_t lapic_address;
  uint64_t ioapic_address;
  uint8_t ioapic_id;
  uint32_t ioapic_gsi_base;
  // Hardware-reduced ACPI sleep registers: the guest writes (SLP_TYP << 2) | SLP_EN (bit 5) to
  // the control port to enter a sleep state; S5 (soft off) uses s5_sleep_type.
  uint16_t sleep_control_port;
  uint16_t sleep_status_port;
  uint8_t s5_sleep_type;  // 0-7 (3-bit SLP_TYP field)
  // A byte write of reset_value to reset_port resets the machine (FADT RESET_REG).
  uint16_t reset_port;
  uint8_t reset_value;
  bool i8042_present;  // sets the IAPC_BOOT_ARCH 8042 flag
  // CMOS RAM index of the RTC's century byte (FADT CENTURY); 0: the RTC has none.
  uint8_t rtc_century_register;
  std::vector<DeviceDescription> devices;
  std::vector<InterruptOverride> interrupt_overrides;
};

// The largest CPU count the MADT describes: KVM's x86 vCPU ID limit.
inline constexpr uint32_t kMaxCpus = 4096;

// Throws vmm::Error naming the first problem: a CPU count outside 1..kMaxCpus, an APIC address
// above 4 GiB, a missing sleep or reset port, a bad device name/HID, a duplicate device name,
// or a resource an ACPI descriptor cannot express.
void validate(const PlatformDescription& platform);

}  // namespace vmm::acpi
