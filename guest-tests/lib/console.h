/* Output on the 16550 UART at COM1 (I/O 0x3f8), by polling: no interrupts, no setup needed. */
#pragma once

/* printf subset: %s %c %d %u %x %p and %%, with an optional '0' flag, width and 'l' modifier.
 * A whole call is printed under a spinlock, so lines from different CPUs don't interleave. */
void kprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* kprintf without the lock, for the exception path: its CPU may already hold the lock. */
void kprintf_unlocked(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
