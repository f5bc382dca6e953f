/* vmm's init program: /init of the initramfs vmm builds (init_abi.h has the archive's layout). As
 * PID 1, on the kernel's console, it mounts /proc, /sys and /dev and loads the modules vmm packed
 * (with the parameters the command line gives them). Then, booting a disk without --initrd, it
 * waits for the root device, mounts it on /root and hands over to the disk's init. In a `vmm run`
 * initramfs (it holds VMM_INIT_RUN_JOB) it mounts the host's root read-only under a tmpfs overlay
 * and the job's shares, runs the job's command on the virtio-console ports, and reports its exit
 * status on the control port before powering off. A failure before that is said on the console
 * and reported to vmm through its pvpanic port, so vmm exits with "the guest panicked": PID 1
 * never just exits (the kernel would panic with a less clear message). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "init_abi.h"
#include "init_cmdline.h"
#include "init_run.h"

enum {
  kPvpanicPanicked = 1,
  /* How often to look again for a device node the kernel makes (no udev here). */
  kDevicePollMilliseconds = 10,
  /* Without rootwait, how long the root device may take to appear (rootdelay= adds to it). */
  kRootWaitSeconds = 10,
  /* With rootwait, how often to say what we wait for. */
  kRootWaitReportSeconds = 5,
  /* How long the virtio-console ports may take to appear with their names. */
  kPortWaitSeconds = 10,
  /* An exec that fails as a shell's would: not found, or found but not runnable. */
  kExitNotFound = 127,
  kExitNotExecutable = 126,
};

/* Where run mode mounts the layers of its root, in the initramfs (hidden once /root is the root).
 */
#define RUN_LOWER_DIR "/vmm/lower"
#define RUN_LAYERS_DIR "/vmm/layers"

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

/* The whole of a small file, NUL-terminated, its size (without the NUL) in *size when size is not
 * NULL; NULL with errno set if it can't be read. */
static char* read_file(const char* path, size_t* file_size) {
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
  if (file_size != NULL) *file_size = size;
  return text;
}

static char* read_text_file(const char* path) {
  return read_file(path, NULL);
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
  for (long waited = 0;; waited += kDevicePollMilliseconds) {
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
    sleep_milliseconds(kDevicePollMilliseconds);
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
  (void)unlink(VMM_INIT_RUN_JOB);
  /* Fails in run mode, where the root's layers stay mounted in it: no matter. */
  char parent[] = VMM_INIT_MODULE_DIR;
  *strrchr(parent, '/') = '\0';
  (void)rmdir(parent);
  (void)unlink("/init");
}

/* mkdir -p: each missing folder of the absolute `path`, 0755. */
static void make_directories(const char* path) {
  char* partial = strdup(path);
  if (partial == NULL) die("out of memory");
  for (char* slash = strchr(partial + 1, '/');; slash = strchr(slash + 1, '/')) {
    if (slash != NULL) *slash = '\0';
    if (mkdir(partial, 0755) != 0 && errno != EEXIST) die("mkdir %s: %s", partial, strerror(errno));
    if (slash == NULL) break;
    *slash = '/';
  }
  free(partial);
}

/* Moves the filesystem mounted at `path` ("/dev") to the same place under /root; one the new root
 * has no folder for is unmounted instead, unless `create` makes the folder. */
static void carry_over(const char* path, bool create) {
  char target[64];
  snprintf(target, sizeof target, "/root%s", path);
  if (create) make_directories(target);
  struct stat status;
  if (stat(target, &status) == 0 && S_ISDIR(status.st_mode)) {
    if (mount(path, target, NULL, MS_MOVE, NULL) != 0)
      die("moving %s to %s: %s", path, target, strerror(errno));
  } else if (umount2(path, MNT_DETACH) != 0) {
    die("unmounting %s: %s", path, strerror(errno));
  }
}

static void detach(const char* path) {
  if (umount2(path, MNT_DETACH) != 0) die("unmounting %s: %s", path, strerror(errno));
}

/* Makes /root the root, once the callers have moved or unmounted /dev, /proc and /sys, and
 * deletes the initramfs's files. */
static void switch_root(void) {
  remove_initramfs_files();
  if (chdir("/root") != 0) die("chdir /root: %s", strerror(errno));
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("moving /root to /: %s", strerror(errno));
  if (chroot(".") != 0) die("chroot to the root filesystem: %s", strerror(errno));
  if (chdir("/") != 0) die("chdir / in the root filesystem: %s", strerror(errno));
}

/* Disk mode: /dev goes along (or away), /proc and /sys go (the disk's init mounts its own). */
static void switch_to_disk_root(void) {
  carry_over("/dev", false);
  detach("/proc");
  detach("/sys");
  switch_root();
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

/* Run mode's job, read and checked: a bad one is vmm's bug or a tampered archive. */
static void read_run_job(char** bytes, struct run_job* job) {
  size_t size = 0;
  *bytes = read_file(VMM_INIT_RUN_JOB, &size);
  if (*bytes == NULL) die("%s: %s", VMM_INIT_RUN_JOB, strerror(errno));
  char error[512];
  if (!run_job_parse(*bytes, size, job, error, sizeof error))
    die("%s: %s", VMM_INIT_RUN_JOB, error);
}

/* The root: the host's, read-only, under a tmpfs overlay that takes the guest's writes. */
static void mount_run_root(const struct run_mount* root) {
  make_directories(RUN_LOWER_DIR);
  make_directories(RUN_LAYERS_DIR);
  if (mount(root->tag, RUN_LOWER_DIR, "virtiofs", MS_RDONLY, NULL) != 0)
    die("mounting virtio-fs tag %s on %s: %s", root->tag, RUN_LOWER_DIR, strerror(errno));
  if (mount("tmpfs", RUN_LAYERS_DIR, "tmpfs", 0, "mode=0755") != 0)
    die("mounting a tmpfs on %s: %s", RUN_LAYERS_DIR, strerror(errno));
  make_directories(RUN_LAYERS_DIR "/upper");
  make_directories(RUN_LAYERS_DIR "/work");
  static const char kLayers[] = "lowerdir=" RUN_LOWER_DIR ",upperdir=" RUN_LAYERS_DIR
                                "/upper,workdir=" RUN_LAYERS_DIR "/work";
  if (mount("overlay", "/root", "overlay", 0, kLayers) != 0)
    die("mounting the overlay (%s) on /root: %s", kLayers, strerror(errno));
}

/* What a program expects of a Linux root beyond /dev, /proc and /sys, mounted in the new root. */
static void mount_run_scratch_filesystems(void) {
  static const struct {
    const char* type;
    const char* target;
    unsigned long flags;
    const char* data;
  } kMounts[] = {
      {"tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755"},
      {"tmpfs", "/dev/shm", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666"},
  };
  for (size_t i = 0; i < sizeof kMounts / sizeof kMounts[0]; i++) {
    make_directories(kMounts[i].target);
    if (mount(kMounts[i].type, kMounts[i].target, kMounts[i].type, kMounts[i].flags,
              kMounts[i].data) != 0)
      die("mounting %s on %s: %s", kMounts[i].type, kMounts[i].target, strerror(errno));
  }
}

/* The job's shares after the root, each at its path (made in the overlay when missing). */
static void mount_run_shares(const struct run_job* job) {
  for (size_t i = 1; i < job->mount_count; i++) {
    const struct run_mount* share = &job->mounts[i];
    make_directories(share->path);
    if (mount(share->tag, share->path, "virtiofs", share->read_only ? MS_RDONLY : 0, NULL) != 0)
      die("mounting virtio-fs tag %s on %s (%s): %s", share->tag, share->path,
          share->read_only ? "ro" : "rw", strerror(errno));
  }
}

enum { kStdinPort, kStdoutPort, kStderrPort, kControlPort, kPortCount };

static const struct {
  const char* name;
  int flags;
} kPorts[kPortCount] = {
    [kStdinPort] = {VMM_RUN_PORT_STDIN, O_RDONLY},
    [kStdoutPort] = {VMM_RUN_PORT_STDOUT, O_WRONLY},
    [kStderrPort] = {VMM_RUN_PORT_STDERR, O_WRONLY},
    /* Non-blocking: a write to a port the host has not opened would wait for ever. */
    [kControlPort] = {VMM_RUN_PORT_CONTROL, O_RDWR | O_NONBLOCK},
};

/* Looks through /sys/class/virtio-ports for the named ports not found yet (devices[port] empty)
 * whose /dev node is there; returns how many of kPorts are found by now. */
static size_t find_ports(char devices[kPortCount][64]) {
  DIR* directory = opendir("/sys/class/virtio-ports");
  if (directory == NULL) return 0;
  for (struct dirent* entry; (entry = readdir(directory)) != NULL;) {
    if (entry->d_name[0] == '.' || strlen(entry->d_name) > 32) continue;
    char path[96];
    snprintf(path, sizeof path, "/sys/class/virtio-ports/%.32s/name", entry->d_name);
    char device[64];
    snprintf(device, sizeof device, "/dev/%.32s", entry->d_name);
    char* text = read_text_file(path);
    if (text == NULL) continue;
    text[strcspn(text, "\n")] = '\0';
    for (size_t port = 0; port < kPortCount; port++) {
      if (devices[port][0] == '\0' && strcmp(text, kPorts[port].name) == 0 &&
          access(device, F_OK) == 0) {
        snprintf(devices[port], sizeof devices[port], "%s", device);
      }
    }
    free(text);
  }
  closedir(directory);
  size_t found = 0;
  for (size_t port = 0; port < kPortCount; port++) found += devices[port][0] != '\0';
  return found;
}

/* Opens the four ports, waiting for the kernel to make them (the names come from the host in
 * messages the driver handles after its probe). */
static void open_ports(int fds[kPortCount]) {
  char devices[kPortCount][64] = {{0}};
  const long limit = kPortWaitSeconds * 1000L;
  for (long waited = 0; find_ports(devices) < kPortCount; waited += kDevicePollMilliseconds) {
    if (waited >= limit) {
      char missing[256] = "";
      for (size_t port = 0; port < kPortCount; port++)
        if (devices[port][0] == '\0')
          snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s",
                   kPorts[port].name);
      die("virtio-console ports missing after %d s:%s", kPortWaitSeconds, missing);
    }
    sleep_milliseconds(kDevicePollMilliseconds);
  }
  for (size_t port = 0; port < kPortCount; port++) {
    fds[port] = open(devices[port], kPorts[port].flags | O_CLOEXEC);
    if (fds[port] < 0) die("%s (%s): %s", devices[port], kPorts[port].name, strerror(errno));
  }
  /* Until the host has opened the control port (the driver makes a port writable only then): a
   * read before would be an end of file, and the host's signals lost. */
  struct pollfd control = {.fd = fds[kControlPort], .events = POLLOUT};
  int ready;
  while ((ready = poll(&control, 1, kPortWaitSeconds * 1000)) < 0 && errno == EINTR) {
  }
  if (ready <= 0 || !(control.revents & POLLOUT))
    die("%s: the host did not open it within %d s", VMM_RUN_PORT_CONTROL, kPortWaitSeconds);
}

/* In the child: the job's command, as the caller, on the ports. Never returns; a failure is said on
 * the stderr port and is the exit status a shell would give. */
static __attribute__((noreturn)) void exec_command(const struct run_job* job,
                                                   const int ports[kPortCount],
                                                   const sigset_t* original_mask) {
  sigprocmask(SIG_SETMASK, original_mask, NULL);
  /* Its own session and process group: the host's "signal N" goes to all of it. */
  if (setsid() < 0) dprintf(STDERR_FILENO, "vmm run: setsid: %s\n", strerror(errno));
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
    if (dup2(ports[kStdinPort + fd], fd) < 0) {
      dprintf(STDERR_FILENO, "vmm run: %s: %s\n", kPorts[kStdinPort + fd].name, strerror(errno));
      _exit(kExitNotExecutable);
    }
  }
  const char* step = "setgroups";
  if (setgroups(job->group_count, job->groups) != 0 || (step = "setgid", setgid(job->gid)) != 0 ||
      (step = "setuid", setuid(job->uid)) != 0 || (step = job->cwd, chdir(job->cwd)) != 0) {
    dprintf(STDERR_FILENO, "vmm run: %s: %s\n", step, strerror(errno));
    _exit(kExitNotExecutable);
  }
  extern char** environ;
  environ = job->env; /* execvp searches the job's PATH */
  execvp(job->argv[0], job->argv);
  int error = errno;
  dprintf(STDERR_FILENO, "vmm run: %s: %s\n", job->argv[0], strerror(error));
  _exit(error == ENOENT ? kExitNotFound : kExitNotExecutable);
}

static void deliver_signal(int signal, void* context) {
  pid_t command = *(const pid_t*)context;
  /* Before the child's setsid its group is still init's: then only the child itself. */
  if (kill(-command, signal) != 0 && errno == ESRCH) (void)kill(command, signal);
}

/* Tells vmm the command's exit code and powers off, after the guest's writes reach the shares. */
static __attribute__((noreturn)) void finish(int control_fd, int exit_code) {
  char line[32];
  int length = snprintf(line, sizeof line, VMM_RUN_CONTROL_EXIT "%d\n", exit_code);
  ssize_t written;
  while ((written = write(control_fd, line, (size_t)length)) < 0 && errno == EINTR) {
  }
  if (written != length)
    say("the command exited with %d; telling vmm on %s failed: %s", exit_code, VMM_RUN_PORT_CONTROL,
        written < 0 ? strerror(errno) : "a short write");
  sync();
  reboot(RB_POWER_OFF);
  die("powering off: %s", strerror(errno));
}

/* PID 1's loop while the command runs: reaps every child (orphans come to init), passes the host's
 * signals on, and finishes when the command exits. SIGCHLD is blocked: it arrives on a signalfd. */
static __attribute__((noreturn)) void supervise(pid_t command, int control_fd,
                                                const sigset_t* child_signal) {
  int signal_fd = signalfd(-1, child_signal, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) die("signalfd: %s", strerror(errno));
  struct run_control_reader reader = {0};
  struct pollfd watched[] = {{.fd = signal_fd, .events = POLLIN},
                             {.fd = control_fd, .events = POLLIN}};
  for (;;) {
    int status = 0;
    for (pid_t pid; (pid = waitpid(-1, &status, WNOHANG)) > 0;)
      if (pid == command) finish(control_fd, run_exit_code(status));
    if (poll(watched, sizeof watched / sizeof watched[0], -1) < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    struct signalfd_siginfo info;
    while (read(signal_fd, &info, sizeof info) > 0) {
    }
    if (watched[1].revents & POLLIN) {
      char bytes[256];
      ssize_t count = read(control_fd, bytes, sizeof bytes);
      if (count > 0) run_control_feed(&reader, bytes, (size_t)count, deliver_signal, &command);
      /* The host closed it (or it failed): no more signals; poll would report it for ever. */
      if (count == 0 || (count < 0 && errno != EAGAIN && errno != EINTR)) watched[1].fd = -1;
    } else if (watched[1].revents & (POLLHUP | POLLERR | POLLNVAL)) {
      watched[1].fd = -1;
    }
  }
}

/* Run mode: from the loaded modules to the command's exit. */
static __attribute__((noreturn)) void serve_run_job(void) {
  char* job_bytes = NULL; /* kept: the job points into it */
  struct run_job job;
  read_run_job(&job_bytes, &job);
  mount_run_root(&job.mounts[0]);
  carry_over("/dev", true);
  carry_over("/proc", true);
  carry_over("/sys", true);
  switch_root();
  mount_run_scratch_filesystems();
  mount_run_shares(&job);
  int ports[kPortCount];
  open_ports(ports);

  sigset_t child_signal;
  sigset_t original_mask;
  sigemptyset(&child_signal);
  sigaddset(&child_signal, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &child_signal, &original_mask) != 0)
    die("blocking SIGCHLD: %s", strerror(errno));
  pid_t command = fork();
  if (command < 0) die("fork: %s", strerror(errno));
  if (command == 0) exec_command(&job, ports, &original_mask);
  for (int port = kStdinPort; port <= kStderrPort; port++) close(ports[port]);
  supervise(command, ports[kControlPort], &child_signal);
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
  const bool run_mode = access(VMM_INIT_RUN_JOB, F_OK) == 0;
  if (!run_mode && !init_cmdline_check_root(&cmdline, error, sizeof error)) die("%s", error);

  load_modules(&cmdline, options_size);
  if (run_mode) serve_run_job();
  wait_for_root(&cmdline);
  mount_root(&cmdline);
  switch_to_disk_root();
  exec_init(&cmdline, argc, argv);
}
