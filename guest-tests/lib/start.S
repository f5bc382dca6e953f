/*
 * The payload's entry points. vmm enters startup_64 (payload offset 0x200) in long mode with an
 * identity map, interrupts off and rsi = the zero page. We take our own stack, zero .bss, install
 * the exception handlers and run guest_main(boot_params); its return value is the exit status.
 */
	.section .text.head, "ax"
	.code32
	.globl startup_32
startup_32:
	/* Only the 64-bit entry is supported. */
	cli
1:	hlt
	jmp 1b

	.org 0x200
	.code64
	.globl startup_64
startup_64:
	cli
	cld
	mov %rsi, %r12
	lea bsp_stack_top(%rip), %rsp
	lea __bss_start(%rip), %rdi
	lea __bss_end(%rip), %rcx
	sub %rdi, %rcx
	shr $3, %rcx
	xor %eax, %eax
	rep stosq
	call idt_load
	mov %r12, %rdi
	call guest_main
	movzbl %al, %edi
	call debug_exit

	.section .bss.noinit, "aw", @nobits
	.balign 4096
bsp_stack:
	.skip 16384
bsp_stack_top:
