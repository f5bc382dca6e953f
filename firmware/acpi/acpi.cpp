#include "firmware/acpi/acpi.hpp"

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"
#include "firmware/acpi/tables.hpp"

namespace vmm::acpi {
namespace {

// Hands out 16-byte aligned addresses in the ACPI area, in order.
class AreaAllocator {
 public:
  uint64_t place(uint64_t size, const char* what) {
    uint64_t address = align_up(next_, 16);
    if (size > layout::kAcpiEnd - address) {
      fail("ACPI tables do not fit in {:#x}-{:#x}: the {} ({} bytes) would end at {:#x}",
           layout::kAcpiStart, layout::kAcpiEnd, what, size, address + size);
    }
    next_ = address + size;
    return address;
  }

 private:
  uint64_t next_ = layout::kAcpiStart;
};

}  // namespace

uint64_t write_acpi_tables(const GuestMemory& memory, const PlatformDescription& platform) {
  validate(platform);
  Bytes madt = build_madt(platform);
  Bytes dsdt = build_dsdt(platform);
  constexpr uint64_t kXsdtEntries = 2;  // FADT, MADT

  AreaAllocator area;
  uint64_t rsdp_address = area.place(kRsdpLength, "RSDP");
  uint64_t xsdt_address = area.place(xsdt_length(kXsdtEntries), "XSDT");
  uint64_t fadt_address = area.place(kFadtLength, "FADT");
  uint64_t madt_address = area.place(madt.size(), "MADT");
  uint64_t dsdt_address = area.place(dsdt.size(), "DSDT");

  const uint64_t xsdt_entries[kXsdtEntries] = {fadt_address, madt_address};
  memory.write_or_throw(rsdp_address, build_rsdp(xsdt_address), "ACPI RSDP");
  memory.write_or_throw(xsdt_address, build_xsdt(xsdt_entries), "ACPI XSDT");
  memory.write_or_throw(fadt_address, build_fadt(platform, dsdt_address), "ACPI FADT");
  memory.write_or_throw(madt_address, madt, "ACPI MADT");
  memory.write_or_throw(dsdt_address, dsdt, "ACPI DSDT");
  return rsdp_address;
}

}  // namespace vmm::acpi
