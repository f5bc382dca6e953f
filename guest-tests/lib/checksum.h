/* The checksum rule of the tables a PC firmware hands the OS (ACPI, MP): all bytes sum to zero. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

static inline bool checksum_ok(const void* table, uint32_t length) {
  const uint8_t* p = table;
  uint8_t sum = 0;
  for (uint32_t i = 0; i < length; ++i) sum += p[i];
  return sum == 0;
}
