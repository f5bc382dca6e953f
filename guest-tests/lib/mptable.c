#include "mptable.h"

#include <stdbool.h>

#include "checksum.h"
#include "console.h"
#include "mem.h"

#define MP_PROCESSOR 0
#define MP_LAST_ENTRY_TYPE 4 /* bus, I/O APIC, I/O and local interrupt entries: 8 bytes each */
#define MP_OTHER_ENTRY_LENGTH 8
#define MP_CPU_ENABLED 0x1
#define MP_CPU_BOOT_PROCESSOR 0x2

struct mp_floating_pointer {
  char signature[4]; /* "_MP_" */
  uint32_t config_table;
  uint8_t length; /* in 16-byte units */
  uint8_t revision;
  uint8_t checksum;
  uint8_t features[5];
} __attribute__((packed));

struct mp_config_header {
  char signature[4]; /* "PCMP" */
  uint16_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic;
  uint16_t extended_length;
  uint8_t extended_checksum;
  uint8_t reserved;
} __attribute__((packed));

struct mp_processor {
  uint8_t type, apic_id, apic_version, flags;
  uint32_t signature, features, reserved[2];
} __attribute__((packed));

_Static_assert(sizeof(struct mp_floating_pointer) == 16, "MP floating pointer");
_Static_assert(sizeof(struct mp_config_header) == 44, "MP configuration table header");
_Static_assert(sizeof(struct mp_processor) == 20, "MP processor entry");

static const struct mp_floating_pointer* scan(uintptr_t base, uint32_t length) {
  for (uintptr_t a = base; a < base + length; a += 16) {
    const struct mp_floating_pointer* p = (const struct mp_floating_pointer*)a;
    if (memcmp(p->signature, "_MP_", 4) == 0 && p->length == 1 && checksum_ok(p, sizeof(*p)) &&
        (p->revision == 1 || p->revision == 4)) {
      return p;
    }
  }
  return 0;
}

int mptable_cpus(uint32_t* apic_ids, int max, uint32_t* boot_apic_id) {
  /* Where Linux's smp_scan_config looks: the last KiB of base memory, then the BIOS ROM area (it
   * also tries the first KiB and the EBDA, which hold nothing here). */
  const struct mp_floating_pointer* pointer = scan(639 * 0x400, 0x400);
  if (pointer == 0) pointer = scan(0xf0000, 0x10000);
  if (pointer == 0) {
    kprintf("mptable: no MP floating pointer\n");
    return -1;
  }
  if (pointer->features[0] != 0 || pointer->config_table == 0) {
    kprintf("mptable: no configuration table (default configuration %u)\n", pointer->features[0]);
    return -1;
  }
  const struct mp_config_header* header =
      (const struct mp_config_header*)(uintptr_t)pointer->config_table;
  if (memcmp(header->signature, "PCMP", 4) != 0 || header->length < sizeof(*header)) {
    kprintf("mptable: no PCMP table at %p\n", header);
    return -1;
  }
  if (!checksum_ok(header, header->length)) {
    kprintf("mptable: configuration table checksum is wrong\n");
    return -1;
  }
  const uint8_t* table = (const uint8_t*)header;
  int count = 0, boot_processors = 0;
  uint32_t entries = 0;
  for (uint32_t off = sizeof(*header); off < header->length; ++entries) {
    const uint8_t type = table[off];
    const uint32_t entry_length =
        type == MP_PROCESSOR ? sizeof(struct mp_processor) : MP_OTHER_ENTRY_LENGTH;
    if (type > MP_LAST_ENTRY_TYPE || off + entry_length > header->length) {
      kprintf("mptable: bad entry (type %u) at offset %u\n", type, off);
      return -1;
    }
    const struct mp_processor* cpu = (const struct mp_processor*)(table + off);
    if (type == MP_PROCESSOR && (cpu->flags & MP_CPU_ENABLED)) {
      if (count < max) apic_ids[count] = cpu->apic_id;
      ++count;
      if (cpu->flags & MP_CPU_BOOT_PROCESSOR) {
        *boot_apic_id = cpu->apic_id;
        ++boot_processors;
      }
    }
    off += entry_length;
  }
  if (entries != header->entry_count) {
    kprintf("mptable: %u entries, the header says %u\n", entries, header->entry_count);
    return -1;
  }
  if (boot_processors != 1) {
    kprintf("mptable: %d boot processors\n", boot_processors);
    return -1;
  }
  return count;
}
