#pragma once

#include <cstdint>
#include <optional>
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

// The VM Generation ID (Microsoft's "Virtual Machine Generation ID" interface, which Linux's
// vmgenid driver implements): a 16-byte ID in guest memory that the host changes whenever the VM
// may have been duplicated (restored from a snapshot, cloned). The DSDT describes it as \_SB_.VGEN,
// whose ADDR gives the ID's address, and a Generic Event Device (\_SB_.GED_, ACPI0013) whose
// interrupt, on this GSI, makes the guest re-read the ID: the only event source a
// hardware-reduced platform has.
struct VmGenerationId {
  uint64_t id_address;  // guest-physical, 8-byte aligned, in RAM the e820 map reserves
  uint32_t notify_gsi;  // edge-triggered, active high, used by no other device
};
// The names of its two devices in \_SB_, which no described device may take.
inline constexpr char kVmGenerationIdDeviceName[] = "VGEN";
inline constexpr char kGenericEventDeviceName[] = "GED_";

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
  std::optional<VmGenerationId> vm_generation_id;
};

// The largest CPU count the MADT describes: KVM's x86 vCPU ID limit.
inline constexpr uint32_t kMaxCpus = 4096;

// Throws vmm::Error naming the first problem: a CPU count outside 1..kMaxCpus, an APIC address
// above 4 GiB, a missing sleep or reset port, a bad device name/HID, a duplicate device name,
// a resource an ACPI descriptor cannot express, or a VM Generation ID that is misaligned, shares
// its GSI or takes the name of a described device.
void validate(const PlatformDescription& platform);

}  // namespace vmm::acpi
