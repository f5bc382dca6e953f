/* The smallest boot: greet, echo the command line, exit. "exit=N" on the command line makes the
 * exit status N; "spin" makes the guest never exit (for vmm's --timeout). */
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
  uint64_t status = EXIT_PASS;
  if (cmdline_get_uint(cmdline, "exit", &status) && status > 255) {
    kprintf("hello: exit=%lu does not fit an exit status\n", status);
    return EXIT_FAIL;
  }
  kprintf("hello: exiting with status %lu\n", status);
  return (int)status;
}
