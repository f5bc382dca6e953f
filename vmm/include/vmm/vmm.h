/* vmm.h: the C API of libvmm, for C programs and other languages' foreign-function interfaces.
 *
 * A thin layer over the C++ API (vmm/machine.hpp): a vmm_config describes a machine,
 * vmm_machine_create() assembles it, and the machine runs on threads of its own until the guest
 * stops, its timeout expires or the host stops it. C99; no C++ types and no exceptions cross it.
 *
 * Errors: every function that can fail returns a vmm_status. On failure, vmm_last_error() returns a
 * one-line message for the last failed call on the calling thread; it names the bad input, with
 * the config fields spelled as the vmm command's options ("--cpus 0: must be between 1 and 254",
 * "--disk /x.img: No such file or directory"). Successful calls leave it as it was, like errno.
 *
 * Threads: every vmm_machine function may be called from any thread, and several machines may
 * run in one process. A vmm_config is a plain value: don't change one from two threads at once.
 */
#ifndef VMM_VMM_H_
#define VMM_VMM_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define VMM_API __attribute__((visibility("default")))
#else
#define VMM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vmm_status {
  VMM_OK = 0,
  VMM_EINVAL = 1,   /* an argument or a config field is invalid (the message names it) */
  VMM_ESTATE = 2,   /* the machine is not in a state that allows the call */
  VMM_ETIMEOUT = 3, /* vmm_machine_wait(): the machine was still running when the time was up */
  VMM_EKVM = 4,     /* the KVM device is missing, is not KVM, or can't be used */
  VMM_ENOMEM = 5,   /* out of memory */
  VMM_EFAIL = 6,    /* anything else: the machine could not be set up or run (see the message) */
} vmm_status;

typedef enum vmm_state {
  VMM_STATE_CREATED = 0, /* assembled, not started */
  VMM_STATE_RUNNING = 1,
  VMM_STATE_PAUSED = 2,  /* vCPUs parked, device work held, guest clock stopped */
  VMM_STATE_STOPPED = 3, /* finished: vmm_machine_exit_info() has the exit */
} vmm_state;

typedef enum vmm_exit_reason {
  VMM_EXIT_POWEROFF = 0,   /* guest ACPI poweroff: status 0 */
  VMM_EXIT_REBOOT = 1,     /* guest reboot or reset: status 3 */
  VMM_EXIT_PANIC = 2,      /* guest panic reported through pvpanic: status 4 */
  VMM_EXIT_DEBUG_EXIT = 3, /* a test guest wrote V to the debug-exit port: status V (only with
                              vmm_config_set_debug_exit) */
  VMM_EXIT_TIMEOUT = 4,    /* the configured timeout expired: status 124 */
  VMM_EXIT_STOPPED = 5,    /* vmm_machine_stop() or the control socket's stop: status 5 */
  VMM_EXIT_ERROR = 6,      /* the VMM failed or the guest could not be run: status 1 */
} vmm_exit_reason;

/* Where a snapshot disk keeps the guest's writes (vmm_config_add_disk_snapshot). */
typedef enum vmm_disk_snapshot {
  VMM_DISK_SNAPSHOT_FILE = 1,   /* a sparse, unlinked temporary file in $TMPDIR (/tmp without it) */
  VMM_DISK_SNAPSHOT_MEMORY = 2, /* memory */
} vmm_disk_snapshot;

typedef struct vmm_exit_info {
  vmm_exit_reason reason;
  int exit_status;     /* what the vmm command exits with for this exit (see the reasons) */
  int debug_code;      /* VMM_EXIT_DEBUG_EXIT: the byte the guest wrote */
  const char* message; /* "guest powered off", or what went wrong; owned by the machine */
} vmm_exit_info;

/* Receives the guest's console output, on the machine's event-loop thread, in the order the guest
 * wrote it. It must not block (the machine's devices wait while it runs) and must not call
 * vmm_machine_pause or vmm_machine_wait on the same machine. */
typedef void (*vmm_console_fn)(const uint8_t* bytes, size_t len, void* user);

typedef struct vmm_config vmm_config;
typedef struct vmm_machine vmm_machine;

/* The library's version, "MAJOR.MINOR.PATCH". */
VMM_API const char* vmm_version(void);
/* The message of the last failed call on this thread ("" if none failed yet). Valid until the
 * next failing call on this thread. */
VMM_API const char* vmm_last_error(void);

/* ---- Configuration ----
 * A new config has the vmm command's defaults: 1 vCPU, 512 MiB, a composed kernel command line
 * (see vmm_config_set_append), console on stdio, no disks, NICs, vsock, control socket, timeout
 * or debug-exit port, and an initramfs built for a disk without an initrd. Setters copy their
 * strings, check what can be checked on its own and leave the config unchanged when they fail. */
VMM_API vmm_config* vmm_config_new(void);         /* NULL only when out of memory */
VMM_API void vmm_config_free(vmm_config* config); /* NULL is fine */

VMM_API vmm_status vmm_config_set_kernel(vmm_config* config, const char* path);
VMM_API vmm_status vmm_config_set_initrd(vmm_config* config, const char* path); /* NULL: none */
/* The kernel command line is composed: "console=ttyS0 panic=-1", then what vmm knows (root=/dev/vda
 * rw, or ro for a read-only first disk, when nothing names a root; with acpi=off, a
 * virtio_mmio.device= entry per virtio device), then the text given here (NULL: none). */
VMM_API vmm_status vmm_config_set_append(vmm_config* config, const char* text);
/* Replaces the composed command line: the kernel gets exactly `cmdline`. */
VMM_API vmm_status vmm_config_set_cmdline(vmm_config* config, const char* cmdline);
/* With a disk and no initrd, the machine builds an initramfs in memory that loads the kernel's
 * virtio and root filesystem modules, mounts the root disk and runs its init. The modules come
 * from `dir` (NULL or "": /lib/modules/<the kernel's release>). */
VMM_API vmm_status vmm_config_set_modules(vmm_config* config, const char* dir);
/* false: boot a disk without that initramfs (a kernel with virtio built in). Default true. */
VMM_API vmm_status vmm_config_set_build_initramfs(vmm_config* config, bool build);
VMM_API vmm_status vmm_config_set_cpus(vmm_config* config, uint32_t cpus);
VMM_API vmm_status vmm_config_set_memory_bytes(vmm_config* config, uint64_t bytes);
/* Stops the guest (VMM_EXIT_TIMEOUT) after this many seconds; 0: never. */
VMM_API vmm_status vmm_config_set_timeout(vmm_config* config, uint32_t seconds);
/* Whether the machine's threads run under seccomp allow-lists (default: true). They are per
 * thread: the calling application's threads are never filtered. Off only for debugging. */
VMM_API vmm_status vmm_config_set_seccomp(vmm_config* config, bool enabled);
/* The test-guest exit port (I/O port 0xf4): a byte V written there ends the machine with
 * VMM_EXIT_DEBUG_EXIT and exit status V, so the guest chooses the status. Default false: without
 * it the port is not there (trusted test guests only). */
VMM_API vmm_status vmm_config_set_debug_exit(vmm_config* config, bool enabled);
/* Another KVM device than /dev/kvm. */
VMM_API vmm_status vmm_config_set_kvm_device(vmm_config* config, const char* path);

/* A virtio-blk disk from a raw image or block device; the first is the guest's vda. `serial`
 * (what the guest reads as the disk's ID, at most 20 bytes) may be NULL. */
VMM_API vmm_status vmm_config_add_disk(vmm_config* config, const char* path, bool read_only,
                                       const char* serial);
/* A disk as vmm_config_add_disk adds it, whose image is only read (under a shared lock, so many
 * machines can boot one image at once): the guest's writes go to a private overlay, discarded
 * when the machine is destroyed (the vmm command's --disk PATH,snapshot=on|mem). */
VMM_API vmm_status vmm_config_add_disk_snapshot(vmm_config* config, const char* path,
                                                const char* serial, vmm_disk_snapshot snapshot);
/* A virtio-net NIC on an existing tap device; `mac` is "52:54:00:12:34:56" or NULL for a stable
 * address derived from the tap's name. */
VMM_API vmm_status vmm_config_add_net(vmm_config* config, const char* tap, const char* mac);
/* A rate limit: a token bucket for bytes and one for requests (or packets), each refilled at its
 * rate per second and holding at most its burst. A rate of 0: no limit; a burst of 0: one
 * second's worth. A guest over its budget waits; nothing is refused or dropped for it. */
typedef struct vmm_rate_limit {
  uint64_t bytes_per_second;
  uint64_t bytes_burst;
  uint64_t ops_per_second;
  uint64_t ops_burst;
} vmm_rate_limit;
/* The rate limit of disk `index` (in the order added; the vmm command's --disk PATH,bw=,iops=). */
VMM_API vmm_status vmm_config_set_disk_rate_limit(vmm_config* config, size_t index,
                                                  const vmm_rate_limit* limit);
/* The receive and transmit rate limits of NIC `index` (--net tap=T,rx_bw=,tx_bw=,...). */
VMM_API vmm_status vmm_config_set_net_rate_limits(vmm_config* config, size_t index,
                                                  const vmm_rate_limit* rx,
                                                  const vmm_rate_limit* tx);
/* A virtio-vsock device with guest CID `cid`, reached by host programs at the Unix socket
 * `uds_path` (Firecracker's convention, see docs/EMBEDDING.md). */
VMM_API vmm_status vmm_config_set_vsock(vmm_config* config, uint32_t cid, const char* uds_path);
/* Serves the JSON control API on a Unix socket at `path`; NULL or "": none. */
VMM_API vmm_status vmm_config_set_api_socket(vmm_config* config, const char* path);

/* Where the guest's console (COM1) goes; the last call wins. */
VMM_API vmm_status vmm_config_set_console_stdio(vmm_config* config);
VMM_API vmm_status vmm_config_set_console_none(vmm_config* config);
/* Created or truncated when the machine is created. */
VMM_API vmm_status vmm_config_set_console_file(vmm_config* config, const char* path);
/* Not owned: `fd` must stay open while a machine made from this config exists. */
VMM_API vmm_status vmm_config_set_console_fd(vmm_config* config, int fd);
/* `fn(bytes, len, user)` for every chunk of output; `user` must outlive the machine. */
VMM_API vmm_status vmm_config_set_console_callback(vmm_config* config, vmm_console_fn fn,
                                                   void* user);

/* ---- Machines ---- */

/* Validates `config` and assembles a machine from it (the config is copied: free it whenever).
 * On success *out is the machine (VMM_STATE_CREATED); on failure *out is NULL. */
VMM_API vmm_status vmm_machine_create(const vmm_config* config, vmm_machine** out);
/* Stops the machine if it runs, and releases everything it holds. NULL is fine. */
VMM_API void vmm_machine_destroy(vmm_machine* machine);

/* Starts the guest and returns; VMM_ESTATE unless the machine is VMM_STATE_CREATED. */
VMM_API vmm_status vmm_machine_start(vmm_machine* machine);
/* Waits until the machine stops, for at most `timeout_ms` milliseconds (-1: forever).
 * VMM_OK: it stopped, see vmm_machine_exit_info(); VMM_ETIMEOUT: still running (or paused);
 * VMM_ESTATE: it was never started. */
VMM_API vmm_status vmm_machine_wait(vmm_machine* machine, int64_t timeout_ms);
/* vmm_machine_start() and vmm_machine_wait(machine, -1) in one. */
VMM_API vmm_status vmm_machine_run(vmm_machine* machine);
/* Parks the vCPUs and holds device work; returns once they are parked. VMM_ESTATE unless running
 * (pausing a paused machine is fine). */
VMM_API vmm_status vmm_machine_pause(vmm_machine* machine);
/* Continues a paused machine; VMM_ESTATE unless it is paused or running. */
VMM_API vmm_status vmm_machine_resume(vmm_machine* machine);
/* Asks the machine to stop (VMM_EXIT_STOPPED unless it already stopped for another reason) and
 * returns at once; vmm_machine_wait() tells when it is done. Fine on a stopped machine. */
VMM_API vmm_status vmm_machine_stop(vmm_machine* machine);

VMM_API vmm_status vmm_machine_state(const vmm_machine* machine, vmm_state* out);
/* Why the machine stopped; VMM_ESTATE while it has not. `out->message` stays valid until the
 * machine is destroyed. */
VMM_API vmm_status vmm_machine_exit_info(vmm_machine* machine, vmm_exit_info* out);
/* Bytes for the guest's console input (its COM1 receive queue), e.g. with a callback console. */
VMM_API vmm_status vmm_machine_send_console_input(vmm_machine* machine, const uint8_t* bytes,
                                                  size_t len);

/* Changes a rate limit of a created, running or paused machine at once (the control socket's
 * set-rate-limit): disk `index`'s, or NIC `index`'s two. VMM_EINVAL for an index out of range. */
VMM_API vmm_status vmm_machine_set_disk_rate_limit(vmm_machine* machine, size_t index,
                                                   const vmm_rate_limit* limit);
VMM_API vmm_status vmm_machine_set_net_rate_limits(vmm_machine* machine, size_t index,
                                                   const vmm_rate_limit* rx,
                                                   const vmm_rate_limit* tx);
/* The machine's counters as the control socket's "metrics" command renders them (one JSON object:
 * each device's requests, bytes, errors and rate-limit waits, each vCPU's exits by reason, the
 * event loop's longest handler). *json stays valid until the next call of this function on the
 * machine, or its destruction. Any state. */
VMM_API vmm_status vmm_machine_metrics(vmm_machine* machine, const char** json);

/* ---- Snapshots ----
 * A snapshot is a directory: manifest.json, the guest's RAM (a sparse file) and the state of every
 * vCPU and device. The disks are not copied: restore with the content they had (keep the machine
 * paused, or use snapshot disks). A snapshot restores only into the same vmm version on the same
 * CPU model. See docs/EMBEDDING.md. */

/* Writes a snapshot of a running or paused machine to `dir` (created; it must not hold a snapshot
 * already). The machine is paused for it, once its disk requests in flight have completed, and
 * resumes afterwards unless `stay_paused` (or it was paused before). VMM_ESTATE unless the
 * machine is running or paused; VMM_EFAIL if the snapshot could not be written (the message names
 * the file), in which case the machine carries on as before. */
VMM_API vmm_status vmm_machine_snapshot(vmm_machine* machine, const char* dir, bool stay_paused);
/* A machine that continues the guest of the snapshot in `dir` where it stopped; on success *out
 * is the machine (VMM_STATE_CREATED: vmm_machine_start() runs it), on failure NULL. Its RAM is
 * mapped copy-on-write from the snapshot, so machines restored from one snapshot share the pages
 * none of them wrote; the guest's clock jumps forward by the time since the snapshot.
 * `config` (NULL: a new config's defaults) gives what the restoring process chooses: the console,
 * control socket, timeout, seccomp, KVM device and debug-exit port, and, to replace the
 * snapshot's, its disks, NICs and vsock (as many disks and NICs as the snapshot's guest has, each
 * disk of the same size; none added: the snapshot's). The rest comes from the snapshot: a config
 * whose kernel, initrd, command line, modules, CPUs or memory were set is refused (VMM_EINVAL).
 * VMM_EINVAL also for a snapshot that is missing, corrupt, from another vmm version or CPU, or
 * whose disks don't fit; VMM_EKVM for the KVM device. */
VMM_API vmm_status vmm_machine_restore(const char* dir, const vmm_config* config,
                                       vmm_machine** out);

#ifdef __cplusplus
}
#endif

#endif /* VMM_VMM_H_ */
