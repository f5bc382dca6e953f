/* The contract between vmm's initramfs builder (boot/initramfs/) and the init program it packs
 * (vmm_init.c). Plain C, so both sides include it. The archive (newc cpio) holds:
 *   /init                    the init program (0755)
 *   /dev, /dev/console (5,1, 0600), /proc, /sys, /root   mount points, and the console init opens
 *   VMM_INIT_MODULE_DIR/<name>.ko   each module, uncompressed, '-' in its name turned into '_'
 *   VMM_INIT_MODULE_LIST     one module name a line (no path, no .ko), dependencies first;
 *                            always there, empty when the kernel needs no module
 */
#ifndef VMM_BOOT_INITRAMFS_INIT_INIT_ABI_H
#define VMM_BOOT_INITRAMFS_INIT_INIT_ABI_H

#define VMM_INIT_MODULE_DIR "/vmm/modules"
#define VMM_INIT_MODULE_LIST "/vmm/modules.load"
/* vmm's pvpanic port (devices/legacy/pvpanic.hpp kPortBase): writing 1 (PANICKED) to it makes vmm
 * exit with "the guest panicked". */
#define VMM_INIT_PVPANIC_PORT 0x505

#endif
