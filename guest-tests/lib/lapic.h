/* The local APIC in xAPIC (MMIO) mode at its default address, and the INIT/SIPI sequence. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Checks the APIC is enabled in xAPIC mode at 0xfee00000 and software-enables it. False (after
 * printing why) otherwise. */
bool lapic_init(void);

uint32_t lapic_id(void);

/* Sends INIT (assert, de-assert) and two STARTUP IPIs with `vector_page` (the real-mode start
 * address >> 12) to `apic_id`, as the MP specification describes. False when the ICR never
 * reports the IPI delivered. */
bool lapic_start_cpu(uint32_t apic_id, uint8_t vector_page);
