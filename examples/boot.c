/* Boots a kernel with libvmm's C API (vmm/vmm.h): the guest's console goes to a callback that
 * prints it, the run is bounded by a timeout, and the program ends with the machine's exit
 * status, as the vmm command would. Build with CMake (CMakeLists.txt here) or with pkg-config:
 *
 *   cc -std=c99 -o boot_c boot.c $(pkg-config --cflags --libs vmm)
 *   boot_c [--debug-exit] KERNEL [CMDLINE]
 *
 * --debug-exit is for test guests: a byte V they write to I/O port 0xf4 ends the machine with
 * exit status V (the guest chooses the status, so it is off unless asked for).
 */
#include <stdio.h>
#include <string.h>
#include <vmm/vmm.h>

/* Called on a vCPU thread with what the guest wrote to its serial port. */
static void print_console(const uint8_t* bytes, size_t len, void* user) {
  (void)user;
  fwrite(bytes, 1, len, stdout);
  fflush(stdout);
}

/* Prints what went wrong and returns the vmm command's status for an error. */
static int failed(const char* what) {
  fprintf(stderr, "boot_c: %s: %s\n", what, vmm_last_error());
  return 1;
}

int main(int argc, char** argv) {
  const char* program = argv[0];
  const bool debug_exit = argc > 1 && strcmp(argv[1], "--debug-exit") == 0;
  if (debug_exit) {
    --argc;
    ++argv;
  }
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: %s [--debug-exit] KERNEL [CMDLINE]\n", program);
    return 2;
  }
  vmm_config* config = vmm_config_new();
  if (config == NULL) return failed("vmm_config_new");
  if (vmm_config_set_kernel(config, argv[1]) != VMM_OK ||
      (argc == 3 && vmm_config_set_cmdline(config, argv[2]) != VMM_OK) ||
      vmm_config_set_memory_bytes(config, (uint64_t)128 << 20) != VMM_OK ||
      vmm_config_set_timeout(config, 60) != VMM_OK ||
      vmm_config_set_debug_exit(config, debug_exit) != VMM_OK ||
      vmm_config_set_console_callback(config, print_console, NULL) != VMM_OK) {
    vmm_config_free(config);
    return failed("config");
  }

  vmm_machine* machine = NULL;
  vmm_status status = vmm_machine_create(config, &machine);
  vmm_config_free(config); /* the machine has its own copy */
  if (status != VMM_OK) return failed("vmm_machine_create");

  if (vmm_machine_start(machine) != VMM_OK) {
    vmm_machine_destroy(machine);
    return failed("vmm_machine_start");
  }
  /* The machine runs on threads of its own; this thread could do other work meanwhile. */
  if (vmm_machine_wait(machine, 90 * 1000) == VMM_ETIMEOUT) {
    vmm_machine_stop(machine);
    vmm_machine_wait(machine, -1);
  }
  vmm_exit_info exit;
  if (vmm_machine_exit_info(machine, &exit) != VMM_OK) {
    vmm_machine_destroy(machine);
    return failed("vmm_machine_exit_info");
  }
  printf("\nboot_c: %s (exit status %d)\n", exit.message, exit.exit_status);
  int exit_status = exit.exit_status; /* exit.message belongs to the machine */
  vmm_machine_destroy(machine);
  return exit_status;
}
