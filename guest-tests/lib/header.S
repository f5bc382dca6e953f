/*
 * The bzImage boot sector and setup sector: the Linux setup header at 0x1f1
 * (Documentation/arch/x86/boot.rst). vmm reads it, loads the payload at 1 MiB and enters
 * startup_64 in long mode; the setup code itself never runs.
 */
	.section .setup, "a"
	.code16
	.globl _setup_start
_setup_start:
	/* Booted by something that runs the boot sector: nothing to do but stop. */
	cli
1:	hlt
	jmp 1b

	.org 0x1f1
	.byte 1                 /* setup_sects: payload starts at 2 * 512 */
	.word 0                 /* root_flags */
	.long __syssize         /* syssize: payload size in 16-byte paragraphs */
	.word 0                 /* ram_size */
	.word 0xffff            /* vid_mode: normal */
	.word 0                 /* root_dev */
	.org 0x1fe
	.word 0xaa55            /* boot_flag */
	.org 0x200
	/* The jump's displacement tells loaders where the header ends. */
	.byte 0xeb, setup_code - 1f
1:	.ascii "HdrS"           /* header */
	.word 0x020f            /* version 2.15 */
	.long 0                 /* realmode_swtch */
	.word 0                 /* start_sys_seg */
	.word 0                 /* kernel_version */
	.byte 0                 /* type_of_loader */
	.org 0x211
	.byte 0x01              /* loadflags: LOADED_HIGH */
	.word 0                 /* setup_move_size */
	.long 0x100000          /* code32_start */
	.long 0                 /* ramdisk_image */
	.long 0                 /* ramdisk_size */
	.long 0                 /* bootsect_kludge */
	.word 0                 /* heap_end_ptr */
	.byte 0                 /* ext_loader_ver */
	.byte 0                 /* ext_loader_type */
	.org 0x228
	.long 0                 /* cmd_line_ptr */
	.long 0x37ffffff        /* initrd_addr_max */
	.long 0x200000          /* kernel_alignment */
	.byte 0                 /* relocatable_kernel: no, it runs where it is linked */
	.byte 21                /* min_alignment (log2) */
	.org 0x236
	.word 0x0001            /* xloadflags: XLF_KERNEL_64 */
	.long 2048              /* cmdline_size */
	.long 0                 /* hardware_subarch */
	.quad 0                 /* hardware_subarch_data */
	.long 0                 /* payload_offset */
	.long 0                 /* payload_length */
	.quad 0                 /* setup_data */
	.org 0x258
	.quad 0x100000          /* pref_address */
	.long __init_size       /* init_size: payload, bss and stacks */
	.long 0                 /* handover_offset */
	.long 0                 /* kernel_info_offset */
setup_code:
	.org 0x26c
	cli
2:	hlt
	jmp 2b
	.org 0x400
