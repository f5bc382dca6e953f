/* Exception handling: any CPU exception prints the vector, error code and rip, then ends the run
 * with EXIT_EXCEPTION, so a broken boot contract shows up as a message and not a triple fault. */
#pragma once

/* Loads the IDT on this CPU (the BSP from startup_64, each AP from its entry). */
void idt_load(void);
