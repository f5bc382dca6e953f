#include "firmware/mptable.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "firmware/acpi/tables.hpp"

namespace vmm::firmware {
namespace {

static_assert(std::endian::native == std::endian::little, "MP tables are little-endian");

constexpr char kPointerSignature[4] = {'_', 'M', 'P', '_'};
constexpr char kTableSignature[4] = {'P', 'C', 'M', 'P'};
constexpr uint8_t kSpecRevision = 4;  // MP 1.4
constexpr char kOemId[8] = {'V', 'M', 'M', ' ', ' ', ' ', ' ', ' '};
constexpr char kProductId[12] = {'V', 'M', 'M', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

enum EntryType : uint8_t {
  kProcessor = 0,
  kBus = 1,
  kIoApic = 2,
  kIoInterrupt = 3,
  kLocalInterrupt = 4,
};

constexpr uint8_t kCpuEnabled = 1 << 0;
constexpr uint8_t kCpuBootProcessor = 1 << 1;
// Family 6 and CPUID 1's FPU and APIC feature bits, as Firecracker and kvmtool fill them: the
// guest's own CPUID is the authority (Linux's mpparse only prints these).
constexpr uint32_t kCpuSignature = 0x600;
constexpr uint32_t kCpuFeatures = (1u << 0) | (1u << 9);
// The version registers of KVM's in-kernel local APIC and I/O APIC.
constexpr uint8_t kLocalApicVersion = 0x14;
constexpr uint8_t kIoApicVersion = 0x11;
constexpr uint8_t kIoApicUsable = 1;

constexpr uint8_t kIsaBusId = 0;
constexpr char kIsaBusType[6] = {'I', 'S', 'A', ' ', ' ', ' '};
constexpr uint32_t kIsaIrqCount = 16;

enum InterruptType : uint8_t { kVectored = 0, kNmi = 1, kExtInt = 3 };
// Interrupt flags: polarity in bits 0-1, trigger mode in bits 2-3 (the MADT's encoding); zero
// conforms to the bus, for ISA edge-triggered and active high.
constexpr uint16_t kConformsToBus = 0;
constexpr uint16_t kActiveHigh = 1;
constexpr uint16_t kActiveLow = 3;
constexpr uint16_t kEdgeTriggered = 1 << 2;
constexpr uint16_t kLevelTriggered = 3 << 2;
constexpr uint8_t kAllLocalApics = 0xff;

#pragma pack(push, 1)
struct FloatingPointer {
  char signature[4];  // "_MP_"
  uint32_t config_table_address;
  uint8_t length_paragraphs;  // 1: 16 bytes
  uint8_t spec_revision;
  uint8_t checksum;     // over the 16 bytes
  uint8_t features[5];  // all zero: a configuration table is present, no IMCR (virtual wire mode)
};
struct ConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t base_table_length;
  uint8_t spec_revision;
  uint8_t checksum;  // over the base table: this header and its entries
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table_address;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic_address;
  uint16_t extended_table_length;
  uint8_t extended_table_checksum;
  uint8_t reserved;
};
struct Processor {
  uint8_t type, apic_id, apic_version, flags;
  uint32_t signature, features;
  uint32_t reserved[2];
};
struct Bus {
  uint8_t type, bus_id;
  char bus_type[6];
};
struct IoApic {
  uint8_t type, id, version, flags;
  uint32_t address;
};
// An I/O interrupt assignment (type 3, the destination an I/O APIC pin) or a local one (type 4,
// the destination a LINT pin of a local APIC).
struct InterruptEntry {
  uint8_t type, interrupt_type;
  uint16_t flags;
  uint8_t source_bus, source_irq, destination_apic, destination_pin;
};
#pragma pack(pop)
static_assert(sizeof(FloatingPointer) == 16);
static_assert(sizeof(ConfigHeader) == 44);
static_assert(sizeof(Processor) == 20);
static_assert(sizeof(Bus) == 8);
static_assert(sizeof(IoApic) == 8);
static_assert(sizeof(InterruptEntry) == 8);

constexpr uint64_t kLocalInterrupts = 2;  // LINT0, LINT1

constexpr uint64_t table_length(uint64_t cpus, uint64_t io_interrupts) {
  return sizeof(ConfigHeader) + cpus * sizeof(Processor) + sizeof(Bus) + sizeof(IoApic) +
         (io_interrupts + kLocalInterrupts) * sizeof(InterruptEntry);
}
// Each ISA IRQ is routed once and every other interrupt has a GSI of its own below 256, so the
// largest table fits its area in the layout whatever the description holds.
static_assert(sizeof(FloatingPointer) + table_length(kMaxMpTableCpus, kIsaIrqCount + 256) <=
              layout::kMpTableEnd - layout::kMpTableStart);

uint16_t interrupt_flags(bool level_triggered, bool active_low) {
  return (active_low ? kActiveLow : kActiveHigh) |
         (level_triggered ? kLevelTriggered : kEdgeTriggered);
}

// The I/O APIC pin of `gsi`. The table names an interrupt by an 8-bit bus IRQ and pin; a device
// interrupt's bus IRQ is its GSI, which is the Linux IRQ number a kernel without ACPI gives it.
uint8_t ioapic_pin(const acpi::PlatformDescription& platform, uint32_t gsi) {
  if (gsi < platform.ioapic_gsi_base || gsi > 0xff) {
    fail("MP table: GSI {} is outside the I/O APIC's {}-255 (8-bit IRQ and pin numbers)", gsi,
         platform.ioapic_gsi_base);
  }
  return static_cast<uint8_t>(gsi - platform.ioapic_gsi_base);
}

// The I/O interrupt assignments, made the way Linux reads the MADT (mp_config_acpi_legacy_irqs):
// each interrupt source override first; then every other ISA IRQ on the GSI of its own number,
// unless an override took that GSI (IRQ 2 when IRQ 0 is on GSI 2); then each described device
// interrupt on a GSI no ISA IRQ reached, so that a kernel without ACPI can use it too.
std::vector<InterruptEntry> io_interrupts(const acpi::PlatformDescription& platform) {
  // Trigger and polarity as the DSDT gives them for each device's GSI.
  std::map<uint32_t, uint16_t> device_flags;
  for (const auto& device : platform.devices) {
    for (const auto& irq : device.interrupts) {
      device_flags.try_emplace(irq.gsi, interrupt_flags(irq.level_triggered, irq.active_low));
    }
  }
  std::vector<InterruptEntry> entries;
  std::set<uint32_t> routed_gsis;
  auto route = [&](uint32_t source_irq, uint32_t gsi, uint16_t flags) {
    const uint8_t pin = ioapic_pin(platform, gsi);  // also bounds source_irq, at most gsi
    entries.push_back({.type = kIoInterrupt,
                       .interrupt_type = kVectored,
                       .flags = flags,
                       .source_bus = kIsaBusId,
                       .source_irq = static_cast<uint8_t>(source_irq),
                       .destination_apic = platform.ioapic_id,
                       .destination_pin = pin});
    routed_gsis.insert(gsi);
  };
  for (const auto& over : platform.interrupt_overrides) {
    route(over.isa_irq, over.gsi, interrupt_flags(over.level_triggered, over.active_low));
  }
  for (uint32_t irq = 0; irq < kIsaIrqCount; ++irq) {
    const bool overridden = std::ranges::any_of(platform.interrupt_overrides,
                                                [irq](const auto& o) { return o.isa_irq == irq; });
    if (overridden || routed_gsis.contains(irq)) continue;
    const auto described = device_flags.find(irq);
    route(irq, irq, described != device_flags.end() ? described->second : kConformsToBus);
  }
  for (const auto& [gsi, flags] : device_flags) {
    if (!routed_gsis.contains(gsi)) route(gsi, gsi, flags);
  }
  return entries;
}

// Writes entries one after another into guest memory.
class EntryWriter {
 public:
  EntryWriter(const GuestMemory& memory, uint64_t address) : memory_(memory), address_(address) {}

  template <typename T>
  void put(const T& entry) {
    if (!memory_.write_obj(address_, entry)) {
      fail("MP table: {:#x}-{:#x} is outside guest RAM", address_, address_ + sizeof(T));
    }
    address_ += sizeof(T);
  }

 private:
  const GuestMemory& memory_;
  uint64_t address_;
};

// Sets the byte at `address + checksum_offset` so that the `length` bytes from `address` (written
// just before) sum to zero.
void seal(const GuestMemory& memory, uint64_t address, uint64_t length, size_t checksum_offset) {
  const std::span<uint8_t> bytes = memory.slice(address, length).value();
  bytes[checksum_offset] = 0;
  bytes[checksum_offset] = acpi::checksum(bytes);
}

}  // namespace

void write_mp_table(const GuestMemory& memory, const acpi::PlatformDescription& platform) {
  acpi::validate(platform);
  if (platform.cpu_count > kMaxMpTableCpus) {
    fail("MP table: {} CPUs do not fit its 8-bit APIC IDs (at most {})", platform.cpu_count,
         kMaxMpTableCpus);
  }
  const std::vector<InterruptEntry> io = io_interrupts(platform);
  const uint64_t pointer_address = layout::kMpTableStart;
  const uint64_t table_address = pointer_address + sizeof(FloatingPointer);
  const uint64_t length = table_length(platform.cpu_count, io.size());

  EntryWriter out(memory, table_address);
  ConfigHeader header{};
  std::memcpy(header.signature, kTableSignature, sizeof(header.signature));
  header.base_table_length = static_cast<uint16_t>(length);
  header.spec_revision = kSpecRevision;
  std::memcpy(header.oem_id, kOemId, sizeof(header.oem_id));
  std::memcpy(header.product_id, kProductId, sizeof(header.product_id));
  header.entry_count = static_cast<uint16_t>(platform.cpu_count + 2 + io.size() + kLocalInterrupts);
  header.local_apic_address = static_cast<uint32_t>(platform.lapic_address);
  out.put(header);
  for (uint32_t id = 0; id < platform.cpu_count; ++id) {
    out.put(
        Processor{.type = kProcessor,
                  .apic_id = static_cast<uint8_t>(id),
                  .apic_version = kLocalApicVersion,
                  .flags = static_cast<uint8_t>(kCpuEnabled | (id == 0 ? kCpuBootProcessor : 0)),
                  .signature = kCpuSignature,
                  .features = kCpuFeatures,
                  .reserved = {}});
  }
  Bus isa{.type = kBus, .bus_id = kIsaBusId, .bus_type = {}};
  std::memcpy(isa.bus_type, kIsaBusType, sizeof(isa.bus_type));
  out.put(isa);
  out.put(IoApic{.type = kIoApic,
                 .id = platform.ioapic_id,
                 .version = kIoApicVersion,
                 .flags = kIoApicUsable,
                 .address = static_cast<uint32_t>(platform.ioapic_address)});
  for (const InterruptEntry& entry : io) out.put(entry);
  // The PIC's output on LINT0 and NMIs on LINT1 of every CPU: how vmm programs each vCPU's local
  // APIC, and the MP spec's default configuration.
  auto on_every_local_apic = [](InterruptType type, uint8_t lint) {
    return InterruptEntry{.type = kLocalInterrupt,
                          .interrupt_type = type,
                          .flags = kConformsToBus,
                          .source_bus = kIsaBusId,
                          .source_irq = 0,
                          .destination_apic = kAllLocalApics,
                          .destination_pin = lint};
  };
  out.put(on_every_local_apic(kExtInt, 0));
  out.put(on_every_local_apic(kNmi, 1));
  seal(memory, table_address, length, offsetof(ConfigHeader, checksum));

  FloatingPointer pointer{};
  std::memcpy(pointer.signature, kPointerSignature, sizeof(pointer.signature));
  pointer.config_table_address = static_cast<uint32_t>(table_address);
  pointer.length_paragraphs = 1;
  pointer.spec_revision = kSpecRevision;
  EntryWriter(memory, pointer_address).put(pointer);
  seal(memory, pointer_address, sizeof(FloatingPointer), offsetof(FloatingPointer, checksum));
}

}  // namespace vmm::firmware
