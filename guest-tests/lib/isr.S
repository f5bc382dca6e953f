/*
 * Exception entry stubs for vectors 0-31: each pushes (vector, error code) in the same frame
 * shape and calls exception_handler(vector, error, frame), which reports and ends the run.
 */
	.text
	.code64

.macro ISR vec
isr\vec:
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	/* The CPU pushed an error code. */
	.else
	push $0
	.endif
	push $\vec
	jmp isr_common
.endm

.altmacro
.macro ISR_ALL from=0, to=31
	ISR \from
	.if \to-\from
	ISR_ALL %(\from+1),\to
	.endif
.endm
ISR_ALL

isr_common:
	mov (%rsp), %rdi        /* vector */
	mov 8(%rsp), %rsi       /* error code */
	lea 16(%rsp), %rdx      /* rip, cs, rflags, rsp, ss */
	and $-16, %rsp
	call exception_handler
1:	cli
	hlt
	jmp 1b

.macro ISR_ADDR vec
	.quad isr\vec
.endm
.macro ISR_TABLE from=0, to=31
	ISR_ADDR \from
	.if \to-\from
	ISR_TABLE %(\from+1),\to
	.endif
.endm

	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
	ISR_TABLE
