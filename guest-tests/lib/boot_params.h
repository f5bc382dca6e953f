/* The Linux zero page (struct boot_params) fields the guests read, and the command line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define BOOT_PARAMS_ACPI_RSDP_ADDR 0x070   /* u64 */
#define BOOT_PARAMS_EXT_CMD_LINE_PTR 0x0c8 /* u32: bits 63..32 of the command line address */
#define BOOT_PARAMS_CMD_LINE_PTR 0x228     /* u32: setup header cmd_line_ptr */
#define CMDLINE_MAX 2048                   /* the cmdline_size lib/header.S announces */

uint64_t boot_params_rsdp(const void* boot_params);

/* The NUL-terminated command line, or "" when the loader gave none. */
const char* boot_cmdline(const void* boot_params);

/* True when the space-separated command line holds exactly `word`. */
bool cmdline_has_word(const char* cmdline, const char* word);

/* Looks up "key=<decimal>"; true and *value set when present and well-formed. */
bool cmdline_get_uint(const char* cmdline, const char* key, uint64_t* value);
