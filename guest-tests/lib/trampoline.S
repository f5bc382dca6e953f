/*
 * The AP startup trampoline. smp_prepare() copies [ap_trampoline_start, ap_trampoline_end) to
 * AP_TRAMPOLINE_BASE; a STARTUP IPI starts the AP there in real mode (CS = base >> 4, IP = 0).
 * It goes to protected mode, turns on PAE and long mode with the BSP's CR3 and EFER, and jumps to
 * ap_entry64 in the payload. Its GDT matches vmm's boot GDT selectors (0x10 code, 0x18 data), so
 * the IDT the BSP built works on every CPU.
 */
#include "smp.h"

#define TRAMP(sym) (AP_TRAMPOLINE_BASE + (sym) - ap_trampoline_start)

	.section .rodata.trampoline, "a"
	.balign 16
	.globl ap_trampoline_start, ap_trampoline_end, ap_trampoline_cr3, ap_trampoline_efer
	.code16
ap_trampoline_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdtr - ap_trampoline_start
	mov %cr0, %eax
	or $1, %eax                     /* PE */
	mov %eax, %cr0
	ljmpl $0x08, $TRAMP(tramp_protected)

	.code32
tramp_protected:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	mov %ax, %fs
	mov %ax, %gs
	mov %cr4, %eax
	or $0x20, %eax                  /* PAE */
	mov %eax, %cr4
	mov TRAMP(ap_trampoline_cr3), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx           /* EFER */
	mov TRAMP(ap_trampoline_efer), %eax
	xor %edx, %edx
	wrmsr
	mov %cr0, %eax
	or $0x80000000, %eax            /* PG: with EFER.LME this activates long mode */
	mov %eax, %cr0
	ljmpl $0x10, $ap_entry64

	.balign 8
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
	.quad 0x00af9a000000ffff        /* 0x10: 64-bit code */
	.quad 0x00cf92000000ffff        /* 0x18: data */
tramp_gdt_end:
tramp_gdtr:
	.word tramp_gdt_end - tramp_gdt - 1
	.long TRAMP(tramp_gdt)
ap_trampoline_cr3:
	.long 0
ap_trampoline_efer:
	.long 0
ap_trampoline_end:

	.text
	.code64
ap_entry64:
	/* Take the next AP stack; more APs than stacks just stop here. */
	mov $1, %eax
	lock xadd %eax, ap_stack_next(%rip)
	cmp $SMP_MAX_APS, %eax
	jae 2f
	inc %eax
	shl $AP_STACK_SHIFT, %rax
	lea ap_stacks(%rip), %rsp
	add %rax, %rsp
	call ap_entry_c
2:	cli
	hlt
	jmp 2b
