#include "lapic.h"

#include "console.h"
#include "x86.h"

#define LAPIC_BASE 0xfee00000u
#define LAPIC_ID 0x020
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310

#define APIC_BASE_ENABLE (1u << 11)
#define APIC_BASE_X2APIC (1u << 10)
#define APIC_BASE_ADDRESS_MASK 0xfffff000u
#define SVR_ENABLE (1u << 8)
#define SVR_SPURIOUS_VECTOR 0xff

#define ICR_INIT (5u << 8)
#define ICR_STARTUP (6u << 8)
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_LEVEL_ASSERT (1u << 14)
#define ICR_LEVEL_TRIGGER (1u << 15)

/* Delays of the MP specification's INIT/SIPI/SIPI sequence, in TSC cycles (a few hundred
 * microseconds at any plausible TSC rate: KVM needs none, real hardware wants 10 ms and 200 us). */
#define INIT_DELAY_CYCLES 1000000
#define SIPI_DELAY_CYCLES 200000
#define ICR_IDLE_CYCLES 100000000

static volatile uint32_t* reg(uint32_t offset) {
  return (volatile uint32_t*)(uintptr_t)(LAPIC_BASE + offset);
}

bool lapic_init(void) {
  const uint64_t base = rdmsr(MSR_APIC_BASE);
  if ((base & APIC_BASE_ENABLE) == 0 || (base & APIC_BASE_X2APIC) != 0 ||
      (base & APIC_BASE_ADDRESS_MASK) != LAPIC_BASE) {
    kprintf("lapic: IA32_APIC_BASE is 0x%lx, expected xAPIC mode at 0x%x\n", base, LAPIC_BASE);
    return false;
  }
  *reg(LAPIC_SVR) = SVR_ENABLE | SVR_SPURIOUS_VECTOR;
  return true;
}

uint32_t lapic_id(void) {
  return *reg(LAPIC_ID) >> 24;
}

static bool send_ipi(uint32_t apic_id, uint32_t command) {
  *reg(LAPIC_ICR_HIGH) = apic_id << 24;
  *reg(LAPIC_ICR_LOW) = command;
  const uint64_t start = rdtsc();
  while (*reg(LAPIC_ICR_LOW) & ICR_DELIVERY_PENDING) {
    if (rdtsc() - start > ICR_IDLE_CYCLES) {
      kprintf("lapic: IPI 0x%x to APIC ID %u stays pending\n", command, apic_id);
      return false;
    }
    cpu_relax();
  }
  return true;
}

bool lapic_start_cpu(uint32_t apic_id, uint8_t vector_page) {
  if (!send_ipi(apic_id, ICR_INIT | ICR_LEVEL_TRIGGER | ICR_LEVEL_ASSERT) ||
      !send_ipi(apic_id, ICR_INIT | ICR_LEVEL_TRIGGER)) {
    return false;
  }
  delay_cycles(INIT_DELAY_CYCLES);
  for (int i = 0; i < 2; ++i) {
    if (!send_ipi(apic_id, ICR_STARTUP | vector_page)) return false;
    delay_cycles(SIPI_DELAY_CYCLES);
  }
  return true;
}
