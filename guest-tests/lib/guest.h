/* What a test guest provides: lib/start.S calls guest_main with the zero page vmm passed in rsi
 * and ends the run with its return value as the exit status (lib/exit.h). */
#pragma once

int guest_main(const void* boot_params);
