/* The few C library string functions the guests need (gcc may also emit calls to mem*). */
#pragma once

#include <stddef.h>

void* memcpy(void* dst, const void* src, size_t n);
void* memset(void* dst, int value, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strnlen(const char* s, size_t max);
