#include "acpi.h"

#include <stdbool.h>

#include "boot_params.h"
#include "checksum.h"
#include "console.h"
#include "mem.h"

#define RSDP_V1_LENGTH 20
#define SDT_HEADER_LENGTH 36
#define MADT_ENTRIES_OFFSET 44
#define MADT_LOCAL_APIC 0
#define MADT_LOCAL_X2APIC 9
#define MADT_ENABLED 1u
/* Sanity bound on table sizes: vmm's tables are a few hundred bytes. */
#define SDT_MAX_LENGTH 0x10000
#define BIOS_AREA_START 0xe0000
#define BIOS_AREA_END 0x100000

static uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static const uint8_t* find_rsdp(const void* boot_params) {
  const uint64_t from_loader = boot_params_rsdp(boot_params);
  if (from_loader != 0) return (const uint8_t*)(uintptr_t)from_loader;
  // A loader that doesn't fill acpi_rsdp_addr: look where a BIOS would put it.
  for (uintptr_t a = BIOS_AREA_START; a < BIOS_AREA_END; a += 16) {
    if (memcmp((const void*)a, "RSD PTR ", 8) == 0) return (const uint8_t*)a;
  }
  return 0;
}

/* Checks a system description table's header; returns its length or 0. */
static uint32_t sdt_check(const uint8_t* table, const char* signature) {
  if (memcmp(table, signature, 4) != 0) {
    kprintf("acpi: expected %s at %p\n", signature, table);
    return 0;
  }
  const uint32_t length = get_u32(table + 4);
  if (length < SDT_HEADER_LENGTH || length > SDT_MAX_LENGTH) {
    kprintf("acpi: %s length %u is implausible\n", signature, length);
    return 0;
  }
  if (!checksum_ok(table, length)) {
    kprintf("acpi: %s checksum is wrong\n", signature);
    return 0;
  }
  return length;
}

static const uint8_t* find_table(const uint8_t* rsdp, const char* signature) {
  const bool xsdt = rsdp[15] >= 2;  // revision: ACPI 2.0+ has the 64-bit XSDT
  const uint8_t* root = (const uint8_t*)(uintptr_t)(xsdt ? get_u64(rsdp + 24) : get_u32(rsdp + 16));
  const uint32_t length = sdt_check(root, xsdt ? "XSDT" : "RSDT");
  if (length == 0) return 0;
  const unsigned entry_size = xsdt ? 8 : 4;
  for (uint32_t off = SDT_HEADER_LENGTH; off + entry_size <= length; off += entry_size) {
    const uint8_t* table =
        (const uint8_t*)(uintptr_t)(xsdt ? get_u64(root + off) : get_u32(root + off));
    if (memcmp(table, signature, 4) == 0) return sdt_check(table, signature) ? table : 0;
  }
  kprintf("acpi: no %s table\n", signature);
  return 0;
}

int acpi_madt_cpus(const void* boot_params, uint32_t* apic_ids, int max) {
  const uint8_t* rsdp = find_rsdp(boot_params);
  if (rsdp == 0 || memcmp(rsdp, "RSD PTR ", 8) != 0) {
    kprintf("acpi: no RSDP\n");
    return -1;
  }
  const uint32_t rsdp_length = rsdp[15] >= 2 ? get_u32(rsdp + 20) : RSDP_V1_LENGTH;
  if (rsdp_length < RSDP_V1_LENGTH || rsdp_length > SDT_MAX_LENGTH) {
    kprintf("acpi: RSDP length %u is implausible\n", rsdp_length);
    return -1;
  }
  if (!checksum_ok(rsdp, RSDP_V1_LENGTH) || !checksum_ok(rsdp, rsdp_length)) {
    kprintf("acpi: RSDP checksum is wrong\n");
    return -1;
  }
  const uint8_t* madt = find_table(rsdp, "APIC");
  if (madt == 0) return -1;
  const uint32_t length = get_u32(madt + 4);
  int count = 0;
  for (uint32_t off = MADT_ENTRIES_OFFSET; off + 2 <= length;) {
    const uint8_t type = madt[off];
    const uint8_t entry_length = madt[off + 1];
    if (entry_length < 2 || off + entry_length > length) {
      kprintf("acpi: MADT entry at offset %u has a bad length %u\n", off, entry_length);
      return -1;
    }
    uint32_t apic_id = 0;
    bool enabled = false;
    if (type == MADT_LOCAL_APIC && entry_length >= 8) {
      apic_id = madt[off + 3];
      enabled = (get_u32(madt + off + 4) & MADT_ENABLED) != 0;
    } else if (type == MADT_LOCAL_X2APIC && entry_length >= 16) {
      apic_id = get_u32(madt + off + 4);
      enabled = (get_u32(madt + off + 8) & MADT_ENABLED) != 0;
    }
    if (enabled) {
      if (count < max) apic_ids[count] = apic_id;
      ++count;
    }
    off += entry_length;
  }
  return count;
}
