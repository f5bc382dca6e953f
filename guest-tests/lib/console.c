#include "console.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "x86.h"

#define COM1 0x3f8
#define UART_LSR (COM1 + 5)
#define UART_LSR_THRE 0x20

static volatile uint32_t console_lock;

static void lock(void) {
  while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE)) {
    while (__atomic_load_n(&console_lock, __ATOMIC_RELAXED)) cpu_relax();
  }
}

static void unlock(void) {
  __atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

static void putc_raw(char c) {
  while ((inb(UART_LSR) & UART_LSR_THRE) == 0) cpu_relax();
  outb(COM1, (uint8_t)c);
}

/* Terminals expect CRLF, as Linux's serial console sends it. */
static void putc_tty(char c) {
  if (c == '\n') putc_raw('\r');
  putc_raw(c);
}

static void puts_tty(const char* s) {
  while (*s) putc_tty(*s++);
}

static void put_number(uint64_t value, unsigned base, int width, char pad) {
  char digits[24];
  int n = 0;
  do {
    const unsigned d = value % base;
    digits[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
    value /= base;
  } while (value != 0);
  for (; width > n; --width) putc_tty(pad);
  while (n > 0) putc_tty(digits[--n]);
}

static void vprintf_tty(const char* fmt, va_list args) {
  for (; *fmt; ++fmt) {
    if (*fmt != '%') {
      putc_tty(*fmt);
      continue;
    }
    ++fmt;
    char pad = ' ';
    if (*fmt == '0') {
      pad = '0';
      ++fmt;
    }
    int width = 0;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
    bool is_long = false;
    while (*fmt == 'l') {
      is_long = true;
      ++fmt;
    }
    switch (*fmt) {
      case 's': {
        const char* s = va_arg(args, const char*);
        puts_tty(s ? s : "(null)");
        break;
      }
      case 'c': putc_tty((char)va_arg(args, int)); break;
      case 'd': {
        const int64_t v = is_long ? va_arg(args, int64_t) : va_arg(args, int);
        if (v < 0) putc_tty('-');
        put_number(v < 0 ? -(uint64_t)v : (uint64_t)v, 10, width, pad);
        break;
      }
      case 'u':
        put_number(is_long ? va_arg(args, uint64_t) : va_arg(args, unsigned), 10, width, pad);
        break;
      case 'x':
        put_number(is_long ? va_arg(args, uint64_t) : va_arg(args, unsigned), 16, width, pad);
        break;
      case 'p':
        puts_tty("0x");
        put_number((uintptr_t)va_arg(args, void*), 16, width, pad);
        break;
      case '%': putc_tty('%'); break;
      case '\0': return;
      default:
        putc_tty('%');
        putc_tty(*fmt);
        break;
    }
  }
}

void kprintf(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  lock();
  vprintf_tty(fmt, args);
  unlock();
  va_end(args);
}

void kprintf_unlocked(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vprintf_tty(fmt, args);
  va_end(args);
}
