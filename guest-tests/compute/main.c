/* A long, deterministic computation, for snapshot and restore: a guest whose result depends on
 * every register and every word of RAM it touched staying intact across a snapshot. It fills a
 * 512 KiB buffer, then runs `steps` steps (default 16) of `rounds` rounds (default 2^16) each:
 * a xorshift generator picks a word, the word is mixed and written back, and the mix feeds the
 * generator, so a lost write or register changes everything after it. It prints
 * "compute: step N" before each step and "compute: result <16 hex digits>" (a hash of the buffer
 * and the generator) at the end, then exits with COMPUTE_EXIT_STATUS.
 *
 * After step 0 it prints "compute: waiting" and polls the UART until one byte of console input
 * comes: the tests snapshot it there, its computation half done, and send the byte to whichever
 * machine carries on. A fixed point, not a race against the guest's speed (which differs by
 * thousands of times between a hardware-assisted KVM and one that emulates guest code). */
#include <stdint.h>

#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "x86.h"

/* Not EXIT_PASS: a restored guest that ran its last step must be told from one that went back to
 * its start and returned early. */
#define COMPUTE_EXIT_STATUS 42

#define BUFFER_WORDS_LOG2 16
#define BUFFER_WORDS (1u << BUFFER_WORDS_LOG2)

static uint64_t buffer[BUFFER_WORDS];

#define COM1 0x3f8
#define UART_LSR (COM1 + 5)
#define UART_LSR_DATA_READY 0x01

static void wait_for_console_byte(void) {
  while ((inb(UART_LSR) & UART_LSR_DATA_READY) == 0) cpu_relax();
  (void)inb(COM1);
}

static inline uint64_t rotate_left(uint64_t value, unsigned bits) {
  return (value << bits) | (value >> (64 - bits));
}

static inline uint64_t xorshift64(uint64_t x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

/* One step: `rounds` dependent read-mix-write rounds over the buffer; returns the generator. */
static uint64_t run_step(uint64_t x, uint64_t rounds) {
  for (uint64_t r = 0; r < rounds; ++r) {
    x = xorshift64(x);
    const uint32_t index = (uint32_t)(x >> (64 - BUFFER_WORDS_LOG2));
    const uint64_t mixed = rotate_left(buffer[index] + x, 29) * 0x9e3779b97f4a7c15ull;
    buffer[index] = mixed;
    x += mixed;
  }
  return x;
}

int guest_main(const void* boot_params) {
  const char* cmdline = boot_cmdline(boot_params);
  uint64_t steps = 16;
  uint64_t rounds = 1ull << 16;
  cmdline_get_uint(cmdline, "steps", &steps);
  cmdline_get_uint(cmdline, "rounds", &rounds);
  kprintf("compute: %lu steps of %lu rounds\n", steps, rounds);

  uint64_t x = 0x243f6a8885a308d3ull; /* pi's fraction: any fixed nonzero seed */
  for (uint32_t i = 0; i < BUFFER_WORDS; ++i) {
    x = xorshift64(x);
    buffer[i] = x;
  }
  for (uint64_t step = 0; step < steps; ++step) {
    kprintf("compute: step %lu\n", step);
    x = run_step(x, rounds);
    if (step == 0) {
      kprintf("compute: waiting\n");
      wait_for_console_byte();
    }
  }
  uint64_t hash = x;
  for (uint32_t i = 0; i < BUFFER_WORDS; ++i)
    hash = rotate_left(hash ^ buffer[i], 7) * 0x100000001b3ull;
  kprintf("compute: result %016lx\n", hash);
  return COMPUTE_EXIT_STATUS;
}
