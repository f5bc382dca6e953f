#include "firmware/acpi/tables.hpp"

#include <bit>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "firmware/acpi/aml.hpp"

namespace vmm::acpi {
namespace {

static_assert(std::endian::native == std::endian::little, "ACPI tables are little-endian");

constexpr char kOemId[6] = {'V', 'M', 'M', ' ', ' ', ' '};
constexpr uint32_t kOemRevision = 1;
constexpr char kCreatorId[4] = {'V', 'M', 'M', ' '};
constexpr uint32_t kCreatorRevision = 1;
// FADT "Hypervisor Vendor Identity": tells the guest which VMM it runs on.
constexpr char kHypervisorVendor[8] = {'V', 'M', 'M', ' ', ' ', ' ', ' ', ' '};

#pragma pack(push, 1)
struct SdtHeader {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  char creator_id[4];
  uint32_t creator_revision;
};
static_assert(sizeof(SdtHeader) == 36);

struct Rsdp {
  char signature[8];
  uint8_t checksum;  // over the first 20 bytes (the ACPI 1.0 structure)
  char oem_id[6];
  uint8_t revision;
  uint32_t rsdt_address;
  uint32_t length;
  uint64_t xsdt_address;
  uint8_t extended_checksum;  // over all 36 bytes
  uint8_t reserved[3];
};
static_assert(sizeof(Rsdp) == kRsdpLength);

// Generic Address Structure.
struct Gas {
  uint8_t address_space;
  uint8_t bit_width;
  uint8_t bit_offset;
  uint8_t access_size;
  uint64_t address;
};
static_assert(sizeof(Gas) == 12);

struct Fadt {
  SdtHeader header;
  uint32_t firmware_ctrl;
  uint32_t dsdt;
  uint8_t reserved0;
  uint8_t preferred_pm_profile;
  uint16_t sci_int;
  uint32_t smi_cmd;
  uint8_t acpi_enable;
  uint8_t acpi_disable;
  uint8_t s4bios_req;
  uint8_t pstate_cnt;
  uint32_t pm1a_evt_blk;
  uint32_t pm1b_evt_blk;
  uint32_t pm1a_cnt_blk;
  uint32_t pm1b_cnt_blk;
  uint32_t pm2_cnt_blk;
  uint32_t pm_tmr_blk;
  uint32_t gpe0_blk;
  uint32_t gpe1_blk;
  uint8_t pm1_evt_len;
  uint8_t pm1_cnt_len;
  uint8_t pm2_cnt_len;
  uint8_t pm_tmr_len;
  uint8_t gpe0_blk_len;
  uint8_t gpe1_blk_len;
  uint8_t gpe1_base;
  uint8_t cst_cnt;
  uint16_t p_lvl2_lat;
  uint16_t p_lvl3_lat;
  uint16_t flush_size;
  uint16_t flush_stride;
  uint8_t duty_offset;
  uint8_t duty_width;
  uint8_t day_alrm;
  uint8_t mon_alrm;
  uint8_t century;
  uint16_t iapc_boot_arch;
  uint8_t reserved1;
  uint32_t flags;
  Gas reset_reg;
  uint8_t reset_value;
  uint16_t arm_boot_arch;
  uint8_t minor_version;
  uint64_t x_firmware_ctrl;
  uint64_t x_dsdt;
  Gas x_pm1a_evt_blk;
  Gas x_pm1b_evt_blk;
  Gas x_pm1a_cnt_blk;
  Gas x_pm1b_cnt_blk;
  Gas x_pm2_cnt_blk;
  Gas x_pm_tmr_blk;
  Gas x_gpe0_blk;
  Gas x_gpe1_blk;
  Gas sleep_control_reg;
  Gas sleep_status_reg;
  char hypervisor_vendor[8];
};
static_assert(sizeof(Fadt) == kFadtLength);
static_assert(offsetof(Fadt, iapc_boot_arch) == 109);
static_assert(offsetof(Fadt, flags) == 112);
static_assert(offsetof(Fadt, x_dsdt) == 140);
static_assert(offsetof(Fadt, sleep_control_reg) == 244);

struct MadtLocalApic {  // type 0
  uint8_t type, length, processor_uid, apic_id;
  uint32_t flags;
};
struct MadtIoApic {  // type 1
  uint8_t type, length, ioapic_id, reserved;
  uint32_t address, gsi_base;
};
struct MadtInterruptOverride {  // type 2
  uint8_t type, length, bus, source;
  uint32_t gsi;
  uint16_t flags;
};
struct MadtLocalApicNmi {  // type 4
  uint8_t type, length, processor_uid;
  uint16_t flags;
  uint8_t lint;
};
struct MadtLocalX2Apic {  // type 9
  uint8_t type, length;
  uint16_t reserved;
  uint32_t x2apic_id, flags, processor_uid;
};
struct MadtLocalX2ApicNmi {  // type 0xa
  uint8_t type, length;
  uint16_t flags;
  uint32_t processor_uid;
  uint8_t lint, reserved[3];
};
#pragma pack(pop)
static_assert(sizeof(MadtLocalApic) == 8);
static_assert(sizeof(MadtIoApic) == 12);
static_assert(sizeof(MadtInterruptOverride) == 10);
static_assert(sizeof(MadtLocalApicNmi) == 6);
static_assert(sizeof(MadtLocalX2Apic) == 16);
static_assert(sizeof(MadtLocalX2ApicNmi) == 12);

// FADT revision 6, minor 3 and MADT revision 5 are the ACPI 6.3 layouts.
constexpr uint8_t kFadtRevision = 6;
constexpr uint8_t kFadtMinorVersion = 3;
constexpr uint8_t kMadtRevision = 5;
constexpr uint8_t kXsdtRevision = 1;
constexpr uint8_t kDsdtRevision = 2;  // 2+: AML integers are 64-bit

// FADT fixed feature flags.
constexpr uint32_t kFadtPwrButton = 1u << 4;  // no fixed-feature power button
constexpr uint32_t kFadtSlpButton = 1u << 5;  // no fixed-feature sleep button
constexpr uint32_t kFadtResetRegSup = 1u << 10;
constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
// IAPC_BOOT_ARCH flags.
constexpr uint16_t kBootArch8042 = 1u << 1;
constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;

constexpr uint8_t kGasSystemIo = 1;
constexpr uint8_t kGasByteAccess = 1;

constexpr uint32_t kMadtCpuEnabled = 1u << 0;
// APIC ID 0xff is the xAPIC broadcast ID; it and everything above need x2APIC entries.
constexpr uint32_t kFirstX2ApicId = 0xff;
constexpr uint8_t kAllProcessorsUid = 0xff;
constexpr uint32_t kAllProcessorsX2Uid = 0xffffffff;
constexpr uint8_t kNmiLint = 1;  // LINT1 carries NMI on PC platforms
// MPS INTI flags: polarity in bits 0-1 (1 high, 3 low), trigger mode in bits 2-3 (1 edge, 3 level).
constexpr uint16_t kIntiActiveHigh = 0x1;
constexpr uint16_t kIntiActiveLow = 0x3;
constexpr uint16_t kIntiEdge = 0x1 << 2;
constexpr uint16_t kIntiLevel = 0x3 << 2;

SdtHeader make_header(const char (&signature)[5], uint8_t revision) {
  SdtHeader header{};
  std::memcpy(header.signature, signature, 4);
  header.revision = revision;
  std::memcpy(header.oem_id, kOemId, sizeof(kOemId));
  // OEM table ID "VMM-FACP" etc.: unique per table, as the spec asks.
  std::memcpy(header.oem_table_id, "VMM-", 4);
  std::memcpy(header.oem_table_id + 4, signature, 4);
  header.oem_revision = kOemRevision;
  std::memcpy(header.creator_id, kCreatorId, sizeof(kCreatorId));
  header.creator_revision = kCreatorRevision;
  return header;
}

// Appends the bytes of `value` (a packed table structure or an integer) to `out`. It grows `out`
// and copies into the new room rather than range-inserting: GCC 12 at -O3 reports a spurious
// -Wstringop-overflow for vector::insert at end(), on its path that moves the elements after the
// insertion point (there are none).
template <typename T>
void append_obj(Bytes& out, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t offset = out.size();
  out.resize(offset + sizeof(T));
  std::memcpy(out.data() + offset, &value, sizeof(T));
}

// Header followed by `body`, with length and checksum filled in.
Bytes finish_table(const char (&signature)[5], uint8_t revision, std::span<const uint8_t> body) {
  SdtHeader header = make_header(signature, revision);
  header.length = static_cast<uint32_t>(sizeof(SdtHeader) + body.size());
  Bytes table;
  table.reserve(header.length);
  append_obj(table, header);
  table.insert(table.end(), body.begin(), body.end());
  table[offsetof(SdtHeader, checksum)] = checksum(table);
  return table;
}

Gas system_io_byte(uint16_t port) {
  return Gas{.address_space = kGasSystemIo,
             .bit_width = 8,
             .bit_offset = 0,
             .access_size = kGasByteAccess,
             .address = port};
}

Bytes hid(const std::string& id) {
  return aml::is_eisa_id(id) ? aml::dword(aml::eisa_id(id)) : aml::string(id);
}

Bytes device_aml(const DeviceDescription& device) {
  std::vector<Bytes> resources;
  for (const auto& io : device.io) {
    resources.push_back(aml::io_port(io.base, io.base, 1, static_cast<uint8_t>(io.length)));
  }
  for (const auto& mmio : device.mmio) {
    resources.push_back(aml::memory32_fixed(static_cast<uint32_t>(mmio.base), mmio.length));
  }
  for (const auto& irq : device.interrupts) {
    const uint32_t gsi[] = {irq.gsi};
    resources.push_back(aml::extended_interrupt(
        irq.level_triggered ? aml::Trigger::kLevel : aml::Trigger::kEdge,
        irq.active_low ? aml::Polarity::kActiveLow : aml::Polarity::kActiveHigh, gsi));
  }
  return aml::device(
      device.name,
      aml::concat({aml::name("_HID", hid(device.hid)), aml::name("_UID", aml::integer(device.uid)),
                   aml::name("_CRS", aml::resource_template(resources))}));
}

// \_SB_.VGEN. Its _HID is vmm's own (no driver matches it); Linux's vmgenid driver (5.18 on)
// matches the _CID, "VMGENCTR", Hyper-V's. ADDR gives the ID's address as a package of its low and
// high 32 bits.
Bytes vm_generation_id_aml(const VmGenerationId& id) {
  const Bytes address_halves[] = {aml::integer(id.id_address & 0xffffffff),
                                  aml::integer(id.id_address >> 32)};
  return aml::device(
      kVmGenerationIdDeviceName,
      aml::concat({aml::name("_HID", hid("VMM0001")), aml::name("_CID", aml::string("VMGENCTR")),
                   aml::method("ADDR", 0, aml::return_value(aml::package(address_halves)))}));
}

// \_SB_.GED_: on its interrupt, Linux's GED driver runs _EVT with the GSI, which notifies VGEN; the
// vmgenid driver then reads the ID again and, if it changed, reseeds the guest's RNG.
Bytes generic_event_device_aml(const VmGenerationId& id) {
  constexpr uint64_t kNotifyIdChanged = 0x80;
  const uint32_t gsi[] = {id.notify_gsi};
  const Bytes resources[] = {
      aml::extended_interrupt(aml::Trigger::kEdge, aml::Polarity::kActiveHigh, gsi)};
  const Bytes on_event =
      aml::if_then(aml::equal(aml::arg(0), aml::integer(id.notify_gsi)),
                   aml::notify(std::string("\\_SB_.") + kVmGenerationIdDeviceName,
                               aml::integer(kNotifyIdChanged)));
  return aml::device(
      kGenericEventDeviceName,
      aml::concat({aml::name("_HID", hid("ACPI0013")), aml::name("_UID", aml::integer(0)),
                   aml::name("_CRS", aml::resource_template(resources)),
                   aml::method("_EVT", 1, on_event)}));
}

}  // namespace

uint8_t checksum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return static_cast<uint8_t>(-sum);
}

Bytes build_rsdp(uint64_t xsdt_address) {
  Rsdp rsdp{};
  std::memcpy(rsdp.signature, "RSD PTR ", 8);
  std::memcpy(rsdp.oem_id, kOemId, sizeof(kOemId));
  rsdp.revision = 2;
  rsdp.length = sizeof(Rsdp);
  rsdp.xsdt_address = xsdt_address;
  Bytes out;
  append_obj(out, rsdp);
  out[offsetof(Rsdp, checksum)] =
      checksum(std::span<const uint8_t>(out).first(offsetof(Rsdp, length)));
  out[offsetof(Rsdp, extended_checksum)] = checksum(out);
  return out;
}

Bytes build_xsdt(std::span<const uint64_t> table_addresses) {
  Bytes body;
  for (uint64_t address : table_addresses) append_obj(body, address);
  return finish_table("XSDT", kXsdtRevision, body);
}

Bytes build_fadt(const PlatformDescription& platform, uint64_t dsdt_address) {
  Fadt fadt{};
  fadt.flags = kFadtHwReducedAcpi | kFadtResetRegSup | kFadtPwrButton | kFadtSlpButton;
  fadt.century = platform.rtc_century_register;
  fadt.iapc_boot_arch = kBootArchVgaNotPresent | (platform.i8042_present ? kBootArch8042 : 0);
  fadt.reset_reg = system_io_byte(platform.reset_port);
  fadt.reset_value = platform.reset_value;
  fadt.minor_version = kFadtMinorVersion;
  // Only the 64-bit X_DSDT is set; a non-zero 32-bit DSDT would have to match it.
  fadt.x_dsdt = dsdt_address;
  fadt.sleep_control_reg = system_io_byte(platform.sleep_control_port);
  fadt.sleep_status_reg = system_io_byte(platform.sleep_status_port);
  std::memcpy(fadt.hypervisor_vendor, kHypervisorVendor, sizeof(kHypervisorVendor));

  Bytes body;
  append_obj(body, fadt);
  body.erase(body.begin(), body.begin() + sizeof(SdtHeader));
  return finish_table("FACP", kFadtRevision, body);
}

Bytes build_madt(const PlatformDescription& platform) {
  Bytes body;
  append_obj(body, static_cast<uint32_t>(platform.lapic_address));
  append_obj(body, uint32_t{0});  // flags: no PCAT_COMPAT, the 8259s are not used
  bool any_x2apic = false;
  for (uint32_t id = 0; id < platform.cpu_count; ++id) {
    if (id < kFirstX2ApicId) {
      append_obj(body, MadtLocalApic{.type = 0,
                                     .length = sizeof(MadtLocalApic),
                                     .processor_uid = static_cast<uint8_t>(id),
                                     .apic_id = static_cast<uint8_t>(id),
                                     .flags = kMadtCpuEnabled});
    } else {
      any_x2apic = true;
      append_obj(body, MadtLocalX2Apic{.type = 9,
                                       .length = sizeof(MadtLocalX2Apic),
                                       .reserved = 0,
                                       .x2apic_id = id,
                                       .flags = kMadtCpuEnabled,
                                       .processor_uid = id});
    }
  }
  append_obj(body, MadtIoApic{.type = 1,
                              .length = sizeof(MadtIoApic),
                              .ioapic_id = platform.ioapic_id,
                              .reserved = 0,
                              .address = static_cast<uint32_t>(platform.ioapic_address),
                              .gsi_base = platform.ioapic_gsi_base});
  for (const auto& over : platform.interrupt_overrides) {
    append_obj(body,
               MadtInterruptOverride{.type = 2,
                                     .length = sizeof(MadtInterruptOverride),
                                     .bus = 0,  // ISA
                                     .source = over.isa_irq,
                                     .gsi = over.gsi,
                                     .flags = static_cast<uint16_t>(
                                         (over.active_low ? kIntiActiveLow : kIntiActiveHigh) |
                                         (over.level_triggered ? kIntiLevel : kIntiEdge))});
  }
  append_obj(body, MadtLocalApicNmi{.type = 4,
                                    .length = sizeof(MadtLocalApicNmi),
                                    .processor_uid = kAllProcessorsUid,
                                    .flags = 0,
                                    .lint = kNmiLint});
  if (any_x2apic) {
    append_obj(body, MadtLocalX2ApicNmi{.type = 0xa,
                                        .length = sizeof(MadtLocalX2ApicNmi),
                                        .flags = 0,
                                        .processor_uid = kAllProcessorsX2Uid,
                                        .lint = kNmiLint,
                                        .reserved = {}});
  }
  return finish_table("APIC", kMadtRevision, body);
}

Bytes build_dsdt(const PlatformDescription& platform) {
  Bytes devices;
  for (const auto& device : platform.devices) {
    Bytes encoded = device_aml(device);
    devices.insert(devices.end(), encoded.begin(), encoded.end());
  }
  if (platform.vm_generation_id) {
    devices = aml::concat({devices, vm_generation_id_aml(*platform.vm_generation_id),
                           generic_event_device_aml(*platform.vm_generation_id)});
  }
  // \_S5_ {SLP_TYPa, SLP_TYPb, reserved, reserved}: only SLP_TYPa matters on a
  // hardware-reduced platform.
  const Bytes s5[] = {aml::integer(platform.s5_sleep_type), aml::integer(0), aml::integer(0),
                      aml::integer(0)};
  Bytes body = aml::concat({aml::scope("\\_SB_", devices), aml::name("_S5_", aml::package(s5))});
  return finish_table("DSDT", kDsdtRevision, body);
}

}  // namespace vmm::acpi
