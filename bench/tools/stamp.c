// stamp: runs a VMM and measures its boot from the outside, the same way for every VMM.
//
//   stamp --marker TEXT --guest-mem MiB [--early-marker TEXT] [--log FILE] [--timeout SECONDS]
//         -- CMD ARGS...
//
// t0 is taken just before fork/exec. The child's stdout (the guest's serial console) comes through
// a pipe and is copied to FILE. Reported, in ms since t0: the first byte of output, the first
// occurrence of TEXT (also when a read splits it), and the child's exit. When TEXT appears, the
// child's /proc/<pid>/smaps is read: total Rss, the Rss of the guest-RAM mapping(s) (those at least
// as large as the guest memory), and the difference, the VMM's memory overhead. Also the peak RSS
// (ru_maxrss from wait4). With --early-marker, the ms to its first occurrence too: a point that
// means the same for every VMM (the first byte does not: one VMM's firmware or boot path may print
// where another's is silent). A value that could not be measured is -1. One line on stdout:
//   STAMP first_output_ms=.. marker_ms=.. exit_ms=.. status=.. rss_kib=.. guest_rss_kib=..
//         overhead_kib=.. maxrss_kib=.. [early_marker_ms=..]
// status is the exit code, or 128+N if signal N killed the child (as the shell reports it).
// With --timeout, the child is killed (SIGKILL) after SECONDS.
// Exit status of stamp itself: 0 when it measured (whatever the child did), 2 on usage errors.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void usage(void) {
  fprintf(stderr,
          "usage: stamp --marker TEXT --guest-mem MiB [--early-marker TEXT] [--log FILE] "
          "[--timeout SECONDS] -- CMD ARGS...\n");
  exit(2);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct rss {
  long total_kib, guest_kib;
};

// Sums Rss over all mappings of PID, and separately over the mappings of at least GUEST_BYTES
// (guest RAM; the VMM's own heap, stacks and code are all far smaller). Returns 0 on success.
static int read_rss(pid_t pid, unsigned long long guest_bytes, struct rss* out) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  unsigned long long start, end;
  int in_guest = 0, mappings = 0;
  long kib;
  out->total_kib = out->guest_kib = 0;
  while (fgets(line, sizeof line, f)) {
    // A mapping's header is "start-end perms ..."; its fields follow as "Name:   value kB".
    if (sscanf(line, "%llx-%llx ", &start, &end) == 2) {
      in_guest = end - start >= guest_bytes;
      mappings++;
    } else if (sscanf(line, "Rss: %ld kB", &kib) == 1) {
      out->total_kib += kib;
      if (in_guest) out->guest_kib += kib;
    }
  }
  fclose(f);
  return mappings > 0 ? 0 : -1;  // a zombie's smaps is empty
}

// A text awaited in the output, and when it first appeared (ms since t0; -1: not yet).
struct marker {
  const char* text;
  size_t len;
  double at;
};

// The longest tail of the output that could still begin a marker not seen yet.
static size_t carry_needed(const struct marker* markers, int n) {
  size_t carry = 0;
  for (int i = 0; i < n; i++) {
    if (markers[i].at < 0 && markers[i].len - 1 > carry) carry = markers[i].len - 1;
  }
  return carry;
}

static void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

int main(int argc, char** argv) {
  const char* marker = NULL;
  const char* early_marker = NULL;
  const char* log_path = NULL;
  long guest_mib = -1, timeout_s = 0;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) usage();
    if (strcmp(argv[i], "--marker") == 0) {
      marker = argv[++i];
    } else if (strcmp(argv[i], "--early-marker") == 0) {
      early_marker = argv[++i];
    } else if (strcmp(argv[i], "--guest-mem") == 0) {
      guest_mib = strtol(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--log") == 0) {
      log_path = argv[++i];
    } else if (strcmp(argv[i], "--timeout") == 0) {
      timeout_s = strtol(argv[++i], NULL, 10);
    } else {
      usage();
    }
  }
  if (!marker || !*marker || (early_marker && !*early_marker) || guest_mib <= 0 || i >= argc) {
    usage();
  }
  // markers[0] is --marker, whose appearance also triggers the memory reading.
  struct marker markers[2] = {{marker, strlen(marker), -1}, {early_marker, 0, -1}};
  const int n_markers = early_marker ? 2 : 1;
  if (early_marker) markers[1].len = strlen(early_marker);
  for (int m = 0; m < n_markers; m++) {
    if (markers[m].len > 256) {
      fprintf(stderr, "stamp: marker '%s' longer than 256 bytes\n", markers[m].text);
      return 2;
    }
  }

  int log_fd = -1;
  if (log_path) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      fprintf(stderr, "stamp: --log %s: %s\n", log_path, strerror(errno));
      return 2;
    }
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    perror("stamp: pipe");
    return 2;
  }

  const double t0 = now_ms();
  const pid_t pid = fork();
  if (pid < 0) {
    perror("stamp: fork");
    return 2;
  }
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on the copy
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "stamp: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);

  double first_output = -1, exit_at = -1;
  struct rss rss = {-1, -1};
  // The tail of the previous read (a marker's length - 1 bytes at most) prefixes the next, so a
  // marker split across reads is still found.
  char buf[65536 + 256];
  size_t carry = 0;
  const double deadline = timeout_s > 0 ? t0 + (double)timeout_s * 1e3 : 0;
  int killed = 0;
  for (;;) {
    int wait_ms = -1;
    if (deadline > 0) {
      double left = deadline - now_ms();
      if (left <= 0) {
        if (!killed) kill(pid, SIGKILL);
        killed = 1;
        wait_ms = -1;  // SIGKILL closes its end of the pipe
      } else {
        wait_ms = (int)left + 1;
      }
    }
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    int ready = poll(&pfd, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;
    ssize_t n = read(pipefd[0], buf + carry, sizeof buf - carry);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const double t = now_ms();
    if (first_output < 0) first_output = t - t0;
    if (log_fd >= 0) write_all(log_fd, buf + carry, (size_t)n);
    const size_t len = carry + (size_t)n;
    for (int m = 0; m < n_markers; m++) {
      if (markers[m].at >= 0 || !memmem(buf, len, markers[m].text, markers[m].len)) continue;
      markers[m].at = t - t0;
      if (m == 0 && read_rss(pid, (unsigned long long)guest_mib << 20, &rss) != 0) {
        rss.total_kib = -1;
      }
    }
    const size_t want = carry_needed(markers, n_markers);
    carry = want < len ? want : len;
    memmove(buf, buf + len - carry, carry);
  }

  int wstatus = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  while (wait4(pid, &wstatus, 0, &ru) < 0 && errno == EINTR) {
  }
  exit_at = now_ms() - t0;
  const int status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
  if (log_fd >= 0) close(log_fd);

  const int have_rss = rss.total_kib >= 0;
  printf(
      "STAMP first_output_ms=%.1f marker_ms=%.1f exit_ms=%.1f status=%d rss_kib=%ld "
      "guest_rss_kib=%ld overhead_kib=%ld maxrss_kib=%ld",
      first_output, markers[0].at, exit_at, status, have_rss ? rss.total_kib : -1,
      have_rss ? rss.guest_kib : -1, have_rss ? rss.total_kib - rss.guest_kib : -1, ru.ru_maxrss);
  if (early_marker) printf(" early_marker_ms=%.1f", markers[1].at);
  printf("\n");
  return 0;
}
