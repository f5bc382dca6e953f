/* vmm's init program: /init of the initramfs vmm builds when it boots a kernel from a disk without
 * --initrd (init_abi.h has the archive's layout). As PID 1, on the kernel's console, it mounts
 * /proc, /sys and /dev, loads the modules vmm packed (with the parameters the command line gives
 * them), waits for the root device, mounts it on /root and hands over to the disk's init. A failure
 * is said on the console and reported to vmm through its pvpanic port, so vmm exits with "the guest
 * panicked": PID 1 never just exits (the kernel would panic with a less clear message). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "init_abi.h"
#include "init_cmdline.h"

enum {
  kPvpanicPanicked = 1,
  kRootPollMilliseconds = 10,
  /* Without rootwait, how long the root device may take to appear (rootdelay= adds to it). */
  kRootWaitSeconds = 10,
  /* With rootwait, how often to say what we wait for. */
  kRootWaitReportSeconds = 5,
};

static void say(const char* format, ...) __attribute__((format(printf, 1, 2)));
static void die(const char* format, ...) __attribute__((format(printf, 1, 2), noreturn));

static void vsay(const char* format, va_list args) {
  char message[1024];
  vsnprintf(message, sizeof message, format, args);
  dprintf(STDERR_FILENO, "vmm-init: %s\n", message);
}

static void say(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsay(format, args);
  va_end(args);
}

/* Says what failed, then tells vmm (pvpanic: "the guest panicked"). Without vmm's port, or should
 * the write not stop the machine, powers off: anything but returning from PID 1. */
static void die(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsay(format, args);
  va_end(args);
  if (ioperm(VMM_INIT_PVPANIC_PORT, 1, 1) == 0) outb(kPvpanicPanicked, VMM_INIT_PVPANIC_PORT);
  reboot(RB_POWER_OFF);
  for (;;) pause();
}

static void* allocate(size_t size) {
  void* memory = malloc(size);
  if (memory == NULL) die("out of memory (%zu bytes)", size);
  return memory;
}

/* The whole of a small file, NUL-terminated; NULL with errno set if it can't be read. */
static char* read_text_file(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  size_t size = 0;
  size_t capacity = 4096;
  char* text = allocate(capacity);
  for (;;) {
    if (capacity - size == 1) {
      capacity *= 2;
      char* larger = realloc(text, capacity);
      if (larger == NULL) die("%s: out of memory (%zu bytes)", path, capacity);
      text = larger;
    }
    ssize_t count = read(fd, text + size, capacity - size - 1);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) {
      int error = errno;
      close(fd);
      free(text);
      errno = error;
      return NULL;
    }
    if (count == 0) break;
    size += (size_t)count;
  }
  close(fd);
  text[size] = '\0';
  return text;
}

static void mount_api_filesystem(const char* type, const char* target, unsigned long flags,
                                 const char* data) {
  /* EBUSY: already there (a kernel that mounts devtmpfs itself). */
  if (mount(type, target, type, flags, data) != 0 && errno != EBUSY)
    die("mounting %s on %s: %s", type, target, strerror(errno));
}

static char* trim(char* text) {
  while (*text == ' ' || *text == '\t' || *text == '\r') text++;
  size_t length = strlen(text);
  while (length > 0 && strchr(" \t\r", text[length - 1]) != NULL) text[--length] = '\0';
  return text;
}

static void load_module(const struct init_cmdline* cmdline, const char* name, char* options,
                        size_t options_size) {
  if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
    die("%s: '%s' is not a module name", VMM_INIT_MODULE_LIST, name);
  char path[4096];
  if ((size_t)snprintf(path, sizeof path, "%s/%s.ko", VMM_INIT_MODULE_DIR, name) >= sizeof path)
    die("%s: module name '%.64s...' is too long", VMM_INIT_MODULE_LIST, name);
  char error[256];
  if (!init_cmdline_module_options(cmdline, name, options, options_size, error, sizeof error))
    die("%s", error);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("%s: %s", path, strerror(errno));
  long result = syscall(SYS_finit_module, fd, options, 0);
  int load_error = errno;
  close(fd);
  if (result != 0 && load_error != EEXIST)
    die("loading module %s%s%s: %s", name, *options != '\0' ? " with " : "", options,
        strerror(load_error));
  /* Only frees the initramfs's memory: a failure costs nothing else. */
  (void)unlink(path);
}

/* Loads the modules of VMM_INIT_MODULE_LIST in its order (dependencies first). */
static void load_modules(const struct init_cmdline* cmdline, size_t options_size) {
  char* list = read_text_file(VMM_INIT_MODULE_LIST);
  if (list == NULL) die("%s: %s", VMM_INIT_MODULE_LIST, strerror(errno));
  char* options = allocate(options_size);
  char* position = NULL;
  for (char* line = strtok_r(list, "\n", &position); line != NULL;
       line = strtok_r(NULL, "\n", &position)) {
    char* name = trim(line);
    if (*name != '\0') load_module(cmdline, name, options, options_size);
  }
  free(options);
  free(list);
}

/* The block devices the kernel has, "vda vdb" or "none", for a message. */
static void list_block_devices(char* names, size_t size) {
  size_t used = 0;
  names[0] = '\0';
  DIR* directory = opendir("/sys/class/block");
  if (directory != NULL) {
    for (struct dirent* entry; (entry = readdir(directory)) != NULL;) {
      if (entry->d_name[0] == '.') continue;
      int written =
          snprintf(names + used, size - used, "%s%s", used == 0 ? "" : " ", entry->d_name);
      if (written < 0 || (size_t)written >= size - used) break;
      used += (size_t)written;
    }
    closedir(directory);
  }
  if (used == 0) snprintf(names, size, "none");
}

static void sleep_milliseconds(long milliseconds) {
  struct timespec delay = {.tv_sec = milliseconds / 1000, .tv_nsec = milliseconds % 1000 * 1000000};
  while (nanosleep(&delay, &delay) != 0 && errno == EINTR) {
  }
}

/* Until the root device's node is in /dev: for ever with rootwait (saying so every few seconds),
 * else for kRootWaitSeconds plus rootdelay=. */
static void wait_for_root(const struct init_cmdline* cmdline) {
  const long limit = (kRootWaitSeconds + (long)cmdline->rootdelay) * 1000;
  for (long waited = 0;; waited += kRootPollMilliseconds) {
    struct stat status;
    if (stat(cmdline->root, &status) == 0) {
      if (!S_ISBLK(status.st_mode)) die("root=%s: not a block device", cmdline->root);
      return;
    }
    if (cmdline->rootwait && waited > 0 && waited % (kRootWaitReportSeconds * 1000) == 0)
      say("waiting for the root device %s (rootwait)", cmdline->root);
    if (!cmdline->rootwait && waited >= limit) {
      char devices[512];
      list_block_devices(devices, sizeof devices);
      die("root=%s: no such device after %ld s (block devices: %s)", cmdline->root, limit / 1000,
          devices);
    }
    sleep_milliseconds(kRootPollMilliseconds);
  }
}

/* "ext4,xfs,...": the kernel's filesystems that need a device (/proc/filesystems without "nodev").
 */
static char* block_filesystems(void) {
  char* text = read_text_file("/proc/filesystems");
  if (text == NULL) die("/proc/filesystems: %s", strerror(errno));
  char* names = allocate(strlen(text) + 1);
  names[0] = '\0';
  char* position = NULL;
  for (char* line = strtok_r(text, "\n", &position); line != NULL;
       line = strtok_r(NULL, "\n", &position)) {
    if (strncmp(line, "nodev", 5) == 0) continue;
    char* name = trim(line);
    if (*name == '\0') continue;
    if (names[0] != '\0') strcat(names, ",");
    strcat(names, name);
  }
  free(text);
  return names;
}

/* Tries each of `types` (comma-separated) until one mounts; returns 0 and the type in *mounted, or
 * the last error. */
static int mount_first_of(const struct init_cmdline* cmdline, const char* types,
                          unsigned long flags, char* mounted, size_t mounted_size) {
  char* list = allocate(strlen(types) + 1);
  strcpy(list, types);
  int error = ENODEV;
  char* position = NULL;
  for (char* type = strtok_r(list, ",", &position); type != NULL;
       type = strtok_r(NULL, ",", &position)) {
    if (mount(cmdline->root, "/root", type, flags, cmdline->rootflags) == 0) {
      snprintf(mounted, mounted_size, "%s", type);
      error = 0;
      break;
    }
    error = errno;
  }
  free(list);
  return error;
}

/* Mounts the root device on /root as the kernel would: rootfstype= or every block filesystem, ro
 * unless rw; a read-only device asked for rw is mounted read-only. */
static void mount_root(const struct init_cmdline* cmdline) {
  char* types = cmdline->rootfstype != NULL ? strdup(cmdline->rootfstype) : block_filesystems();
  if (types == NULL) die("out of memory");
  if (*types == '\0')
    die("root=%s: the kernel has no filesystem for block devices (/proc/filesystems)",
        cmdline->root);
  unsigned long flags = cmdline->read_write ? 0 : MS_RDONLY;
  char mounted[64];
  int error = mount_first_of(cmdline, types, flags, mounted, sizeof mounted);
  if ((error == EACCES || error == EROFS) && flags == 0) {
    say("%s is read-only: mounting it read-only", cmdline->root);
    flags = MS_RDONLY;
    error = mount_first_of(cmdline, types, flags, mounted, sizeof mounted);
  }
  if (error != 0)
    die("mounting root=%s on /root (tried %s%s%s): %s", cmdline->root, types,
        cmdline->rootflags != NULL ? ", rootflags=" : "",
        cmdline->rootflags != NULL ? cmdline->rootflags : "", strerror(error));
  if (!cmdline->quiet) say("mounted %s (%s, %s)", cmdline->root, mounted, flags == 0 ? "rw" : "ro");
  free(types);
}

/* The initramfs's files stay in memory until deleted, hidden under the new root. */
static void remove_initramfs_files(void) {
  DIR* directory = opendir(VMM_INIT_MODULE_DIR);
  if (directory != NULL) {
    for (struct dirent* entry; (entry = readdir(directory)) != NULL;)
      if (entry->d_name[0] != '.') (void)unlinkat(dirfd(directory), entry->d_name, 0);
    closedir(directory);
  }
  (void)rmdir(VMM_INIT_MODULE_DIR);
  (void)unlink(VMM_INIT_MODULE_LIST);
  char parent[] = VMM_INIT_MODULE_DIR;
  *strrchr(parent, '/') = '\0';
  (void)rmdir(parent);
  (void)unlink("/init");
}

/* Makes /root the root: /dev goes along (or away), /proc and /sys go (the disk's init mounts its
 * own), and the initramfs's files are deleted. */
static void switch_root(void) {
  struct stat status;
  if (stat("/root/dev", &status) == 0 && S_ISDIR(status.st_mode)) {
    if (mount("/dev", "/root/dev", NULL, MS_MOVE, NULL) != 0)
      die("moving /dev to /root/dev: %s", strerror(errno));
  } else if (umount2("/dev", MNT_DETACH) != 0) {
    die("unmounting /dev: %s", strerror(errno));
  }
  if (umount2("/proc", MNT_DETACH) != 0) die("unmounting /proc: %s", strerror(errno));
  if (umount2("/sys", MNT_DETACH) != 0) die("unmounting /sys: %s", strerror(errno));
  remove_initramfs_files();
  if (chdir("/root") != 0) die("chdir /root: %s", strerror(errno));
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("moving /root to /: %s", strerror(errno));
  if (chroot(".") != 0) die("chroot to the root filesystem: %s", strerror(errno));
  if (chdir("/") != 0) die("chdir / in the root filesystem: %s", strerror(errno));
}

/* Runs init= or, as the kernel does, the first of its list that runs, with our arguments (the
 * kernel's unknown parameters) and environment. */
static void exec_init(const struct init_cmdline* cmdline, int argc, char** argv) {
  char** init_argv = allocate(((size_t)argc + 1) * sizeof *init_argv);
  memcpy(init_argv + 1, argv + 1, (size_t)argc * sizeof *argv); /* argv[1..argc], NULL included */
  if (cmdline->init != NULL) {
    init_argv[0] = (char*)cmdline->init;
    execv(cmdline->init, init_argv);
    die("init=%s: %s", cmdline->init, strerror(errno));
  }
  static const char* const kDefaultInits[] = {"/sbin/init", "/etc/init", "/bin/init", "/bin/sh"};
  for (size_t i = 0; i < sizeof kDefaultInits / sizeof kDefaultInits[0]; i++) {
    init_argv[0] = (char*)kDefaultInits[i];
    execv(kDefaultInits[i], init_argv);
    if (errno != ENOENT) say("%s: %s", kDefaultInits[i], strerror(errno));
  }
  die("root=%s has no init that runs (tried /sbin/init, /etc/init, /bin/init, /bin/sh): give init=",
      cmdline->root);
}

int main(int argc, char** argv) {
  mount_api_filesystem("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_api_filesystem("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_api_filesystem("devtmpfs", "/dev", MS_NOSUID, "mode=0755");

  char* text = read_text_file("/proc/cmdline");
  if (text == NULL) die("/proc/cmdline: %s", strerror(errno));
  /* The module options of one module are never longer than the command line they come from. */
  const size_t options_size = strlen(text) + 1;
  struct init_cmdline cmdline;
  char error[512];
  if (!init_cmdline_parse(text, &cmdline, error, sizeof error)) die("%s", error);

  load_modules(&cmdline, options_size);
  wait_for_root(&cmdline);
  mount_root(&cmdline);
  switch_root();
  exec_init(&cmdline, argc, argv);
}
