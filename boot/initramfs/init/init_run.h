/* `vmm run`'s side of the init program that the host's unit tests can reach: the job's parser
 * (VMM_INIT_RUN_JOB, init_abi.h has its format), the control port's lines and CMD's exit code.
 * Plain C, built for the guest with the init program and for this host with its tests. */
#ifndef VMM_BOOT_INITRAMFS_INIT_INIT_RUN_H
#define VMM_BOOT_INITRAMFS_INIT_INIT_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "init_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* setgroups' limit (NGROUPS_MAX): more could never be set. */
enum { RUN_JOB_MAX_GROUPS = 65536 };

struct run_mount {
  const char* tag;
  const char* path;
  bool read_only;
};

/* Every string points into the bytes given to run_job_parse, which must outlive this; the arrays
 * are allocated (run_job_free frees them). */
struct run_job {
  uid_t uid;
  gid_t gid;
  size_t group_count;
  gid_t* groups;
  const char* cwd;
  size_t mount_count; /* at least 1: mounts[0] is the root, "/" read-only */
  struct run_mount* mounts;
  size_t argc; /* at least 1, argv[0] not empty */
  char** argv; /* NULL-terminated */
  size_t envc;
  char** env; /* NULL-terminated, each "NAME=value" */
};

/* Parses and checks the job file's `size` bytes (init_abi.h): every count against the data left,
 * every number, path, tag and mode. Returns true, or false with a one-line reason in `error` and
 * nothing to free. */
bool run_job_parse(char* bytes, size_t size, struct run_job* job, char* error, size_t error_size);
void run_job_free(struct run_job* job);

/* Splits what the host writes on the control port into lines, VMM_RUN_CONTROL_LINE_MAX bytes at
 * most ('\n' included); a longer line is dropped whole. Zero-initialise it. */
struct run_control_reader {
  char line[VMM_RUN_CONTROL_LINE_MAX];
  size_t length;
  bool discarding; /* in a line too long, until its '\n' */
};

/* Feeds `size` bytes; calls on_signal for each complete "signal N\n" line (N 1 to 64) and ignores
 * every other line. */
void run_control_feed(struct run_control_reader* reader, const char* bytes, size_t size,
                      void (*on_signal)(int signal, void* context), void* context);

/* CMD's exit code as a shell gives it from waitpid's status: its exit status, or 128 + the signal
 * that killed it. */
int run_exit_code(int wait_status);

#ifdef __cplusplus
}
#endif

#endif
