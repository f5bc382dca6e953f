/* The C API from a program written in C (compiled as C99): refuses a bad field, then boots the
 * hello test guest with its console going to a callback, and checks the greeting and the exit.
 * Usage: capi_smoke HELLO_BZIMAGE. Exits 77 (a skip for ctest) when /dev/kvm can't be opened. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm/vmm.h"

#define SKIP 77

struct console {
  char text[4096];
  size_t len;
};

static void collect(const uint8_t* bytes, size_t len, void* user) {
  struct console* console = user;
  size_t room = sizeof console->text - 1 - console->len;
  if (len > room) len = room;
  memcpy(console->text + console->len, bytes, len);
  console->len += len;
  console->text[console->len] = '\0';
}

static int check(int ok, const char* what) {
  if (!ok) fprintf(stderr, "capi_smoke: FAILED: %s (last error: %s)\n", what, vmm_last_error());
  return ok;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: capi_smoke HELLO_BZIMAGE\n");
    return 2;
  }
  vmm_config* config = vmm_config_new();
  if (!check(config != NULL, "vmm_config_new")) return 1;
  if (!check(vmm_config_set_cpus(config, 0) == VMM_EINVAL, "cpus 0 is refused") ||
      !check(strstr(vmm_last_error(), "--cpus 0") != NULL, "the message names --cpus")) {
    return 1;
  }

  int kvm = open("/dev/kvm", O_RDWR);
  if (kvm < 0) {
    printf("capi_smoke: skipped: /dev/kvm can't be opened\n");
    vmm_config_free(config);
    return SKIP;
  }
  close(kvm);

  static struct console console;
  int ok = check(vmm_config_set_kernel(config, argv[1]) == VMM_OK, "set_kernel") &&
           check(vmm_config_set_cmdline(config, "console=ttyS0 from-c") == VMM_OK, "cmdline") &&
           check(vmm_config_set_memory_bytes(config, 64u << 20) == VMM_OK, "memory") &&
           check(vmm_config_set_timeout(config, 30) == VMM_OK, "timeout") &&
           /* The guest's exit status comes through port 0xf4, which only --debug-exit wires. */
           check(vmm_config_set_debug_exit(config, true) == VMM_OK, "debug exit") &&
           check(vmm_config_set_console_callback(config, collect, &console) == VMM_OK,
                 "console callback");
  vmm_machine* machine = NULL;
  ok = ok && check(vmm_machine_create(config, &machine) == VMM_OK, "vmm_machine_create");
  vmm_config_free(config);
  ok = ok && check(vmm_machine_run(machine) == VMM_OK, "vmm_machine_run");
  vmm_exit_info exit;
  ok = ok && check(vmm_machine_exit_info(machine, &exit) == VMM_OK, "vmm_machine_exit_info");
  ok = ok && check(exit.reason == VMM_EXIT_DEBUG_EXIT && exit.exit_status == 0,
                   "the guest exits with status 0");
  ok = ok && check(strstr(console.text, "hello from the test guest") != NULL, "the greeting") &&
       check(strstr(console.text, "cmdline: console=ttyS0 from-c") != NULL, "the command line");
  if (ok) printf("capi_smoke: ok (%s, libvmm %s)\n", exit.message, vmm_version());
  vmm_machine_destroy(machine); /* exit.message belongs to the machine */
  if (!ok) fprintf(stderr, "--- console ---\n%s\n", console.text);
  return ok ? 0 : 1;
}
