/* Starting application processors: they begin in real mode at the trampoline (copied to
 * AP_TRAMPOLINE_BASE, below 1 MiB and clear of vmm's boot data), switch to long mode with the
 * BSP's page tables, take a stack of their own and call the function given to smp_prepare(). */
#pragma once

/* Shared with trampoline.S. */
#define AP_TRAMPOLINE_BASE 0x10000
#define SMP_MAX_APS 63
#define AP_STACK_SHIFT 12

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

/* Copies the trampoline into place; every AP started afterwards runs ap_main (then halts). */
void smp_prepare(void (*ap_main)(void));

/* INIT/SIPI/SIPI to `apic_id`. Returns once the IPIs are delivered, not when the AP runs. */
bool smp_start_ap(uint32_t apic_id);
#endif
