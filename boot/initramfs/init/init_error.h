/* The init program's parsers report a failure as a one-line reason in the caller's buffer. */
#ifndef VMM_BOOT_INITRAMFS_INIT_INIT_ERROR_H
#define VMM_BOOT_INITRAMFS_INIT_INIT_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Writes the reason into `error` and returns false, so a parser can `return init_fail(...)`. */
static inline bool init_fail(char* error, size_t error_size, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

static inline bool init_fail(char* error, size_t error_size, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(error, error_size, format, args);
  va_end(args);
  return false;
}

#endif
