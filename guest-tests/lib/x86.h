/* Privileged x86 instructions the guests use, as inline functions. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value) {
  __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port) {
  uint8_t value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

static inline uint64_t rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t read_cr3(void) {
  uint64_t value;
  __asm__ volatile("mov %%cr3, %0" : "=r"(value));
  return value;
}

static inline uint16_t read_cs(void) {
  uint16_t value;
  __asm__ volatile("mov %%cs, %0" : "=r"(value));
  return value;
}

static inline void cpu_relax(void) {
  __asm__ volatile("pause" ::: "memory");
}

/* Interrupts stay off, so this sleeps until the VMM ends the run. */
static inline __attribute__((noreturn)) void halt_forever(void) {
  for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}

/* Busy-waits about `cycles` TSC cycles. Under an emulating hypervisor each loop iteration costs
 * microseconds, so waiting on the TSC (not on an iteration count) keeps the delay honest. */
static inline void delay_cycles(uint64_t cycles) {
  const uint64_t start = rdtsc();
  while (rdtsc() - start < cycles) cpu_relax();
}

#define MSR_EFER 0xc0000080u
#define MSR_APIC_BASE 0x1bu
