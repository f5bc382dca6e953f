/* Brings up every CPU the MADT lists through INIT/SIPI/SIPI. Each AP bumps a shared counter with a
 * locked add and reports its APIC ID; the BSP waits (bounded) for each in turn. Exits 0 when all
 * are up (given "cpus=N" on the command line, N were listed) and the MP table lists the same CPUs
 * with this one as the boot processor, 1 otherwise. */
#include <stdbool.h>
#include <stdint.h>

#include "acpi.h"
#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "lapic.h"
#include "mptable.h"
#include "smp.h"
#include "x86.h"

#define MAX_CPUS (SMP_MAX_APS + 1)
/* How long one AP may take from STARTUP IPI to checking in: seconds at any plausible TSC rate,
 * generous for an emulated trampoline on a busy host. */
#define AP_CHECKIN_CYCLES 10000000000ull

static volatile uint32_t aps_up;

static void ap_main(void) {
  kprintf("smp: cpu with APIC ID %u is up\n", lapic_id());
  __atomic_fetch_add(&aps_up, 1, __ATOMIC_SEQ_CST);
}

/* True when the MP table lists the MADT's CPUs (the same count, every APIC ID). */
static bool mp_table_agrees(const uint32_t* madt_ids, const uint32_t* mp_ids, int cpus,
                            int mp_cpus) {
  if (mp_cpus != cpus) {
    kprintf("smp: the MP table lists %d cpus, the MADT %d\n", mp_cpus, cpus);
    return false;
  }
  for (int i = 0; i < cpus; ++i) {
    bool listed = false;
    for (int j = 0; j < cpus; ++j) listed |= mp_ids[j] == madt_ids[i];
    if (!listed) {
      kprintf("smp: APIC ID %u is in the MADT, not in the MP table\n", madt_ids[i]);
      return false;
    }
  }
  return true;
}

static bool wait_for_aps(uint32_t expected) {
  const uint64_t start = rdtsc();
  while (__atomic_load_n(&aps_up, __ATOMIC_ACQUIRE) < expected) {
    if (rdtsc() - start > AP_CHECKIN_CYCLES) return false;
    cpu_relax();
  }
  return true;
}

int guest_main(const void* boot_params) {
  const char* cmdline = boot_cmdline(boot_params);
  uint32_t apic_ids[MAX_CPUS];
  const int cpus = acpi_madt_cpus(boot_params, apic_ids, MAX_CPUS);
  if (cpus < 1) return EXIT_FAIL;
  kprintf("smp: MADT lists %d cpus\n", cpus);
  uint64_t expected;
  if (cmdline_get_uint(cmdline, "cpus", &expected) && expected != (uint64_t)cpus) {
    kprintf("smp: expected %lu cpus\n", expected);
    return EXIT_FAIL;
  }
  if (cpus > MAX_CPUS) {
    kprintf("smp: this guest starts at most %d cpus\n", MAX_CPUS);
    return EXIT_FAIL;
  }
  uint32_t mp_apic_ids[MAX_CPUS];
  uint32_t mp_boot_apic_id = 0;
  const int mp_cpus = mptable_cpus(mp_apic_ids, MAX_CPUS, &mp_boot_apic_id);
  if (mp_cpus < 0) return EXIT_FAIL;
  kprintf("smp: MP table lists %d cpus\n", mp_cpus);
  if (!mp_table_agrees(apic_ids, mp_apic_ids, cpus, mp_cpus)) return EXIT_FAIL;
  if (!lapic_init()) return EXIT_FAIL;
  const uint32_t bsp = lapic_id();
  bool bsp_listed = false;
  for (int i = 0; i < cpus; ++i) bsp_listed |= apic_ids[i] == bsp;
  if (!bsp_listed) {
    kprintf("smp: the boot cpu's APIC ID %u is not in the MADT\n", bsp);
    return EXIT_FAIL;
  }
  if (mp_boot_apic_id != bsp) {
    kprintf("smp: the MP table's boot processor is APIC ID %u, not %u\n", mp_boot_apic_id, bsp);
    return EXIT_FAIL;
  }

  smp_prepare(ap_main);
  uint32_t started = 0;
  for (int i = 0; i < cpus; ++i) {
    if (apic_ids[i] == bsp) continue;
    if (!smp_start_ap(apic_ids[i])) return EXIT_FAIL;
    ++started;
    if (!wait_for_aps(started)) {
      kprintf("smp: cpu with APIC ID %u did not come up\n", apic_ids[i]);
      return EXIT_FAIL;
    }
  }
  const uint32_t up = 1 + __atomic_load_n(&aps_up, __ATOMIC_ACQUIRE);
  kprintf("smp: %u of %d cpus up\n", up, cpus);
  return up == (uint32_t)cpus ? EXIT_PASS : EXIT_FAIL;
}
