#include "idt.h"

#include <stdint.h>

#include "console.h"
#include "exit.h"
#include "x86.h"

#define EXCEPTION_VECTORS 32
#define GATE_INTERRUPT_64 0x8e  // present, DPL 0, 64-bit interrupt gate

struct idt_entry {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
  uint16_t limit;
  uint64_t base;
} __attribute__((packed));

struct exception_frame {
  uint64_t rip, cs, rflags, rsp, ss;
};

extern const uint64_t isr_table[EXCEPTION_VECTORS];

static struct idt_entry idt[EXCEPTION_VECTORS];
static volatile uint32_t idt_ready;

void idt_load(void) {
  // The BSP fills the table first; APs (which use the same selector layout, see trampoline.S)
  // only load it.
  if (!__atomic_load_n(&idt_ready, __ATOMIC_ACQUIRE)) {
    const uint16_t cs = read_cs();
    for (int v = 0; v < EXCEPTION_VECTORS; ++v) {
      const uint64_t handler = isr_table[v];
      idt[v] = (struct idt_entry){
          .offset_low = (uint16_t)handler,
          .selector = cs,
          .type = GATE_INTERRUPT_64,
          .offset_mid = (uint16_t)(handler >> 16),
          .offset_high = (uint32_t)(handler >> 32),
      };
    }
    __atomic_store_n(&idt_ready, 1, __ATOMIC_RELEASE);
  }
  const struct idt_pointer pointer = {.limit = sizeof(idt) - 1, .base = (uint64_t)idt};
  __asm__ volatile("lidt %0" : : "m"(pointer));
}

/* Called by isr_common (isr.S) on the faulting CPU's stack. */
void exception_handler(uint64_t vector, uint64_t error, const struct exception_frame* frame);

void exception_handler(uint64_t vector, uint64_t error, const struct exception_frame* frame) {
  uint64_t cr2;
  __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
  kprintf_unlocked("\nguest: exception %lu error 0x%lx rip 0x%lx cr2 0x%lx\n", vector, error,
                   frame->rip, cr2);
  debug_exit(EXIT_EXCEPTION);
}
