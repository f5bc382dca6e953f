#include "boot_params.h"

#include "mem.h"

static uint32_t read_u32(const void* base, unsigned offset) {
  uint32_t value;
  memcpy(&value, (const uint8_t*)base + offset, sizeof(value));
  return value;
}

uint64_t boot_params_rsdp(const void* boot_params) {
  uint64_t value;
  memcpy(&value, (const uint8_t*)boot_params + BOOT_PARAMS_ACPI_RSDP_ADDR, sizeof(value));
  return value;
}

const char* boot_cmdline(const void* boot_params) {
  const uint64_t address = read_u32(boot_params, BOOT_PARAMS_CMD_LINE_PTR) |
                           (uint64_t)read_u32(boot_params, BOOT_PARAMS_EXT_CMD_LINE_PTR) << 32;
  return address == 0 ? "" : (const char*)(uintptr_t)address;
}

/* Calls visit(word, length) for each space-separated word until it returns true. */
static bool find_word(const char* cmdline, bool (*visit)(const char*, size_t, const void*),
                      const void* arg) {
  const char* p = cmdline;
  const char* end = cmdline + strnlen(cmdline, CMDLINE_MAX);
  while (p < end) {
    while (p < end && *p == ' ') ++p;
    const char* word = p;
    while (p < end && *p != ' ') ++p;
    if (p > word && visit(word, (size_t)(p - word), arg)) return true;
  }
  return false;
}

static bool word_equals(const char* word, size_t length, const void* arg) {
  const char* wanted = arg;
  return strnlen(wanted, length + 1) == length && memcmp(word, wanted, length) == 0;
}

bool cmdline_has_word(const char* cmdline, const char* word) {
  return find_word(cmdline, word_equals, word);
}

struct uint_lookup {
  const char* key;
  uint64_t* value;
  bool ok;
};

static bool parse_key_value(const char* word, size_t length, const void* arg) {
  struct uint_lookup* lookup = (struct uint_lookup*)arg;
  const size_t key_length = strnlen(lookup->key, CMDLINE_MAX);
  if (length <= key_length + 1 || memcmp(word, lookup->key, key_length) != 0 ||
      word[key_length] != '=') {
    return false;
  }
  uint64_t value = 0;
  for (size_t i = key_length + 1; i < length; ++i) {
    if (word[i] < '0' || word[i] > '9' || value > UINT64_MAX / 10 - 9) return true;
    value = value * 10 + (uint64_t)(word[i] - '0');
  }
  *lookup->value = value;
  lookup->ok = true;
  return true;
}

bool cmdline_get_uint(const char* cmdline, const char* key, uint64_t* value) {
  struct uint_lookup lookup = {.key = key, .value = value, .ok = false};
  find_word(cmdline, parse_key_value, &lookup);
  return lookup.ok;
}
