/* The contract between vmm's initramfs builder (boot/initramfs/) and the init program it packs
 * (vmm_init.c). Plain C, so both sides include it. The archive (newc cpio) holds:
 *   /init                    the init program (0755)
 *   /dev, /dev/console (5,1, 0600), /proc, /sys, /root   mount points, and the console init opens
 *   VMM_INIT_MODULE_DIR/<name>.ko   each module, uncompressed, '-' in its name turned into '_'
 *   VMM_INIT_MODULE_LIST     one module name a line (no path, no .ko), dependencies first;
 *                            always there, empty when the kernel needs no module
 *   VMM_INIT_RUN_JOB         only in a `vmm run` initramfs, where its presence selects run mode
 *
 * Run mode (`vmm run -- CMD`): the guest's root is the host's, shared over virtio-fs and mounted
 * read-only under a tmpfs overlay; CMD runs with its stdin, stdout and stderr on virtio-console
 * ports, and init reports its exit status on a fourth, the control port. VMM_INIT_RUN_JOB holds
 * NUL-terminated strings, in this order, and nothing after them:
 *   VMM_RUN_JOB_MAGIC
 *   uid, gid                 decimal, below 4294967295 ((uid_t)-1 means "no change" to the kernel)
 *   groups                   the supplementary group ids, decimal, separated by ',', or ""
 *   cwd                      absolute
 *   mount count N (decimal, 1 to VMM_RUN_JOB_MAX_MOUNTS), then N times: virtio-fs tag (1 to
 *                            VMM_RUN_TAG_MAX bytes), absolute path, "ro" or "rw"; the first is the
 *                            root (path "/", "ro"), no other is "/"; no path has a ".." part
 *   argc (decimal, at least 1), then argc strings, the first not empty
 *   envc (decimal), then envc "NAME=value" strings (NAME not empty)
 * The whole file is at most VMM_RUN_JOB_MAX_SIZE bytes.
 */
#ifndef VMM_BOOT_INITRAMFS_INIT_INIT_ABI_H
#define VMM_BOOT_INITRAMFS_INIT_INIT_ABI_H

#define VMM_INIT_MODULE_DIR "/vmm/modules"
#define VMM_INIT_MODULE_LIST "/vmm/modules.load"
/* vmm's pvpanic port (devices/legacy/pvpanic.hpp kPortBase): writing 1 (PANICKED) to it makes vmm
 * exit with "the guest panicked". */
#define VMM_INIT_PVPANIC_PORT 0x505

#define VMM_INIT_RUN_JOB "/vmm/run.job"
#define VMM_RUN_JOB_MAGIC "vmm-run-1"
#define VMM_RUN_JOB_MAX_SIZE (4u << 20)
#define VMM_RUN_JOB_MAX_MOUNTS 64u
/* The virtio-fs config space's tag field (struct virtio_fs_config) holds 36 bytes. */
#define VMM_RUN_TAG_MAX 36u
/* The tag vmm gives the host's root filesystem. */
#define VMM_RUN_ROOT_TAG "vmm-root"

/* The virtio-console port names (VIRTIO_CONSOLE_PORT_NAME) init finds the ports by. stdin is the
 * caller's stdin, host to guest: the host closing the port is CMD's EOF. */
#define VMM_RUN_PORT_STDIN "vmm.stdin"
#define VMM_RUN_PORT_STDOUT "vmm.stdout"
#define VMM_RUN_PORT_STDERR "vmm.stderr"
/* Lines of text. Guest to host, once, when CMD has exited (then init syncs and powers off):
 * "exit N\n", N 0 to 255 as a shell reports it (128 + the signal that killed CMD, 126 not
 * executable, 127 not found). Host to guest: "signal N\n" sends signal N to CMD's process group.
 * A line longer than VMM_RUN_CONTROL_LINE_MAX bytes (its '\n' included) is junk and ignored. */
#define VMM_RUN_PORT_CONTROL "vmm.control"
#define VMM_RUN_CONTROL_EXIT "exit "
#define VMM_RUN_CONTROL_SIGNAL "signal "
#define VMM_RUN_CONTROL_LINE_MAX 64u

#endif
