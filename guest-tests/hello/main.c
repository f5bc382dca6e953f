/* The smallest boot: greet, echo the command line, exit. "exit=N" on the command line makes the
 * exit status N; "spin" makes the guest never exit (for vmm's --timeout). "reboot", "poweroff"
 * and "panic" end the guest the way a Linux guest would, through the platform
 * devices vmm's ACPI tables describe, so each exit path can be tested without a Linux guest.
 * "tick" prints a numbered line now and then, forever (a guest that visibly runs, for pause and
 * resume); "echo" writes back every byte it reads from COM1 until it reads a '.', then exits.
 * "burst" makes two exit requests back to back, as issue 11 (item 5) saw hang: one byte on COM1,
 * the debug-exit write (the status of "exit=N", else 0), an i8042 reset pulse, then hlt.
 * "triplefault" loads an empty IDT and raises an exception: a PC resets (issue 12: vmm logs it). */
#include <stdint.h>

#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "x86.h"

int guest_main(const void* boot_params) {
  const char* cmdline = boot_cmdline(boot_params);
  kprintf("hello from the test guest\n");
  kprintf("cmdline: %s\n", cmdline);
  if (cmdline_has_word(cmdline, "spin")) {
    kprintf("hello: spinning until the VMM stops us\n");
    halt_forever();
  }
  if (cmdline_has_word(cmdline, "tick")) {
    for (uint64_t n = 0;; ++n) {
      kprintf("tick %lu\n", n);
      delay_cycles(20 * 1000 * 1000);
    }
  }
  if (cmdline_has_word(cmdline, "echo")) {
    kprintf("echo: ready\n");
    for (;;) {
      while ((inb(0x3fd) & 1) == 0) cpu_relax(); /* LSR.DR: a byte waits in RBR */
      const uint8_t c = inb(0x3f8);
      outb(0x3f8, c); /* THR: not kprintf, whose formatting is slow where KVM emulates the guest */
      if (c == '.') {
        kprintf("\necho: done\n");
        return EXIT_PASS;
      }
    }
  }
  if (cmdline_has_word(cmdline, "burst")) {
    uint64_t code = EXIT_PASS;
    cmdline_get_uint(cmdline, "exit", &code);
    outb(0x3f8, '!');
    outb(DEBUG_EXIT_PORT, (uint8_t)code);
    outb(0x64, 0xfe); /* vmm has stopped this vCPU at the write above: never reached */
    halt_forever();
  }
  if (cmdline_has_word(cmdline, "reboot")) {
    kprintf("hello: resetting through the i8042\n");
    outb(0x64, 0xfe); /* pulse the reset line: the FADT's reset register */
    halt_forever();
  }
  if (cmdline_has_word(cmdline, "triplefault")) {
    kprintf("hello: faulting with no IDT\n");
    static const struct __attribute__((packed)) {
      uint16_t limit;
      uint64_t base;
    } no_idt = {0, 0};
    /* int3 finds no gate (#GP), nor does the #GP (#DF), nor the #DF: a triple fault. */
    __asm__ volatile("lidt %0\n\tint3" : : "m"(no_idt));
    halt_forever();
  }
  if (cmdline_has_word(cmdline, "poweroff")) {
    kprintf("hello: entering ACPI S5\n");
    outb(0x600, (5 << 2) | (1 << 5)); /* SLP_TYP=5 (the DSDT's \\_S5), SLP_EN */
    halt_forever();
  }
  if (cmdline_has_word(cmdline, "panic")) {
    kprintf("hello: reporting a panic through pvpanic\n");
    outb(0x505, 1);
    halt_forever();
  }
  uint64_t status = EXIT_PASS;
  if (cmdline_get_uint(cmdline, "exit", &status) && status > 255) {
    kprintf("hello: exit=%lu does not fit an exit status\n", status);
    return EXIT_FAIL;
  }
  kprintf("hello: exiting with status %lu\n", status);
  return (int)status;
}
