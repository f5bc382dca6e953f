/* A minimal MP table reader (Intel MultiProcessor Specification 1.4): the floating pointer found
 * where Linux scans for it, the configuration table's checksum, length and entries checked. */
#pragma once

#include <stdint.h>

/* Fills apic_ids[] with the APIC IDs of the enabled processors the MP table lists, and
 * *boot_apic_id with the one flagged as the boot processor; returns how many are enabled (more
 * than `max` are counted but not stored). Returns -1 (after printing why) when the table is
 * missing or malformed, or when not exactly one enabled processor is the boot processor. */
int mptable_cpus(uint32_t* apic_ids, int max, uint32_t* boot_apic_id);
