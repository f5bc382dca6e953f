/* Floods COM1 the way a driver that honours the UART's back-pressure does: wait for THRE (no
 * time limit), then a FIFO's worth (16 bytes) in one `rep outsb`. "flood=N" sends N bytes
 * (default 1 MiB) of the pattern 'a' + i % 26 after the line "console: flooding N bytes", then
 * exits 0. With a console nobody reads, vmm's buffer fills and the guest waits on LSR forever:
 * for vmm's --timeout, stop and pause while the host's reader is stuck.
 * "burst=N" (at most 4096) sends N bytes per THRE instead of 16: where every exit is slow (the
 * nested lab's L1 runs vmm under TCG) a burst fills vmm's buffer within a test's time; the UART
 * drops what a burst writes beyond the room THRE promised, as a real one would. */
#include <stdint.h>

#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "x86.h"

#define COM1 0x3f8
#define UART_LSR (COM1 + 5)
#define UART_LSR_THRE 0x20
#define FIFO_SIZE 16

/* The pattern from every starting phase: chunk i starts at pattern + i % 26. */
#define MAX_BURST 4096
static char pattern[26 + MAX_BURST];

static void send_chunk(const char* bytes, uint64_t count) {
  __asm__ volatile("rep outsb" : "+S"(bytes), "+c"(count) : "d"((uint16_t)COM1) : "memory");
}

int guest_main(const void* boot_params) {
  const char* cmdline = boot_cmdline(boot_params);
  uint64_t bytes = 1u << 20;
  cmdline_get_uint(cmdline, "flood", &bytes);
  uint64_t burst = FIFO_SIZE;
  cmdline_get_uint(cmdline, "burst", &burst);
  if (burst == 0 || burst > MAX_BURST) burst = FIFO_SIZE;
  for (unsigned i = 0; i < sizeof(pattern); ++i) pattern[i] = (char)('a' + i % 26);
  kprintf("console: flooding %lu bytes\n", bytes);
  for (uint64_t sent = 0; sent < bytes;) {
    while ((inb(UART_LSR) & UART_LSR_THRE) == 0) cpu_relax();
    const uint64_t n = bytes - sent < burst ? bytes - sent : burst;
    send_chunk(pattern + sent % 26, n);
    sent += n;
  }
  kprintf("\nconsole: done\n");
  return EXIT_PASS;
}
