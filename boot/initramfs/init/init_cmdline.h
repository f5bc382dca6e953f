/* The kernel command line as vmm's init program reads it (/proc/cmdline): what it needs to find and
 * mount a disk's root filesystem, and the module parameters it hands to the modules it loads. Plain
 * C, so the init program (built for the guest) and the host's unit tests share it. */
#ifndef VMM_BOOT_INITRAMFS_INIT_INIT_CMDLINE_H
#define VMM_BOOT_INITRAMFS_INIT_INIT_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { INIT_CMDLINE_MAX_MODULE_PARAMS = 64 };

/* `<module>.<name>[=<value>]`: the module's name is not NUL-terminated (module_length says how long
 * it is); name and value are. value is NULL for a bare flag (`virtio_net.napi_tx`). */
struct init_module_param {
  const char* module;
  size_t module_length;
  const char* name;
  const char* value;
};

/* Every string points into the text given to init_cmdline_parse, which must outlive this. */
struct init_cmdline {
  const char* root;       /* root=, or NULL; init_cmdline_check_root checks it */
  const char* rootfstype; /* rootfstype=, a comma-separated list, or NULL: try every filesystem */
  const char* rootflags;  /* rootflags=, the filesystem's mount data, or NULL */
  const char* init;       /* init=, or NULL: the kernel's list (/sbin/init, ...) */
  bool read_write;        /* rw; ro, the default, clears it; the last one wins */
  bool rootwait;          /* wait for the root device for ever */
  unsigned rootdelay;     /* rootdelay=, seconds: how much longer to wait for the root device */
  bool quiet;             /* quiet: say nothing when all goes well */
  size_t module_param_count;
  struct init_module_param module_params[INIT_CMDLINE_MAX_MODULE_PARAMS];
};

/* Parses `text` (modified in place: split into words, quotes removed) the way the kernel does:
 * words split at white space outside double quotes, `"a b"` and `name="a b"` quoted, nothing after
 * a lone `--` (the init's arguments). Returns true, or false with a one-line reason in `error`. */
bool init_cmdline_parse(char* text, struct init_cmdline* cmdline, char* error, size_t error_size);

/* Disk mode needs root=, a /dev path. Returns true, or false with a one-line reason in `error`. */
bool init_cmdline_check_root(const struct init_cmdline* cmdline, char* error, size_t error_size);

/* Writes the parameters the command line gives `module` ('-' and '_' alike) as finit_module takes
 * them, "name=value name2" (a value with white space double-quoted), into `options`. Returns false,
 * with a reason in `error`, if they don't fit in options_size bytes; a buffer as long as the parsed
 * text always suffices. */
bool init_cmdline_module_options(const struct init_cmdline* cmdline, const char* module,
                                 char* options, size_t options_size, char* error,
                                 size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
