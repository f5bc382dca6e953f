#include "exit.h"

#include "x86.h"

void debug_exit(uint8_t status) {
  outb(DEBUG_EXIT_PORT, status);
  /* The VMM stops this vCPU at the write; should it return, never run on. */
  halt_forever();
}
