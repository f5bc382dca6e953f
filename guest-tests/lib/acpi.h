/* A minimal ACPI reader: RSDP (from the zero page, else the BIOS-area scan) -> XSDT/RSDT ->
 * MADT, checking every checksum on the way. */
#pragma once

#include <stdint.h>

/* Fills apic_ids[] with the APIC IDs of the enabled processors the MADT lists (Processor Local
 * APIC and Processor Local x2APIC entries) and returns how many there are; more than `max` are
 * counted but not stored. Returns -1 (after printing why) when the tables are missing or bad. */
int acpi_madt_cpus(const void* boot_params, uint32_t* apic_ids, int max);
