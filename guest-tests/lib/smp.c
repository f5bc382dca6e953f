#include "smp.h"

#include "console.h"
#include "idt.h"
#include "lapic.h"
#include "mem.h"
#include "x86.h"

#define AP_STACK_SIZE (1u << AP_STACK_SHIFT)
#define EFER_LMA (1u << 10)

/* Defined by trampoline.S: the real-mode code and the slots it reads in protected mode. */
extern const uint8_t ap_trampoline_start[], ap_trampoline_end[];
extern uint32_t ap_trampoline_cr3, ap_trampoline_efer;

/* Read by ap_entry64 (trampoline.S), which hands each AP the next stack. */
uint8_t ap_stacks[SMP_MAX_APS][AP_STACK_SIZE]
    __attribute__((section(".bss.noinit"), aligned(AP_STACK_SIZE)));
uint32_t ap_stack_next;

static void (*ap_function)(void);

static void* trampoline_slot(const void* symbol) {
  return (void*)(uintptr_t)(AP_TRAMPOLINE_BASE + ((const uint8_t*)symbol - ap_trampoline_start));
}

void smp_prepare(void (*ap_main)(void)) {
  ap_function = ap_main;
  memcpy((void*)(uintptr_t)AP_TRAMPOLINE_BASE, ap_trampoline_start,
         (size_t)(ap_trampoline_end - ap_trampoline_start));
  // The APs share the BSP's identity map (loaded before paging is on, so it must be below 4 GiB)
  // and EFER (LME, and NXE should the map use NX bits), minus LMA which the CPU sets itself.
  const uint32_t cr3 = (uint32_t)read_cr3();
  const uint32_t efer = (uint32_t)rdmsr(MSR_EFER) & ~EFER_LMA;
  memcpy(trampoline_slot(&ap_trampoline_cr3), &cr3, sizeof(cr3));
  memcpy(trampoline_slot(&ap_trampoline_efer), &efer, sizeof(efer));
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool smp_start_ap(uint32_t apic_id) {
  if (__atomic_load_n(&ap_stack_next, __ATOMIC_ACQUIRE) >= SMP_MAX_APS) {
    kprintf("smp: no stack left for APIC ID %u\n", apic_id);
    return false;
  }
  return lapic_start_cpu(apic_id, AP_TRAMPOLINE_BASE >> 12);
}

/* Called by ap_entry64 on the AP's own stack. */
void ap_entry_c(void);

void ap_entry_c(void) {
  idt_load();
  ap_function();
  halt_forever();
}
