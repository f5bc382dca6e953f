/* Ending the run through vmm's debug-exit port: the byte written becomes vmm's exit status. */
#pragma once

#include <stdint.h>

#define DEBUG_EXIT_PORT 0xf4

/* Exit statuses shared by the guests (see guest-tests/README.md). */
#define EXIT_PASS 0
#define EXIT_FAIL 1
#define EXIT_EXCEPTION 3

__attribute__((noreturn)) void debug_exit(uint8_t status);
