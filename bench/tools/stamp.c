// stamp: runs a VMM and measures its boot from the outside, the same way for every VMM.
//
//   stamp --marker TEXT --guest-mem MiB [--early-marker TEXT] [--log FILE] [--timeout SECONDS]
//         [--send LINE [--send-after TEXT]] -- CMD ARGS...
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
// With --send, the child's stdin (the guest's console input) is a pipe, and LINE and a newline are
// written to it at once, or with --send-after when TEXT first appears on the console; then
// sent_ms=.. (when it was written) ends the line. The pipe stays open until the child exits.
// Without --send, the child's stdin is stamp's.
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
          "[--timeout SECONDS] [--send LINE [--send-after TEXT]] -- CMD ARGS...\n");
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

// A text awaited in the output (NULL: none), and when it first appeared (ms since t0; -1: not yet).
struct marker {
  const char* text;
  size_t len;
  double at;
};
// The markers: --marker (its appearance also triggers the memory reading), --early-marker,
// --send-after.
enum { kMarker, kEarlyMarker, kSendAfter, kMarkers };

// The longest tail of the output that could still begin a marker not seen yet.
static size_t carry_needed(const struct marker* markers) {
  size_t carry = 0;
  for (int i = 0; i < kMarkers; i++) {
    if (markers[i].text && markers[i].at < 0 && markers[i].len - 1 > carry) {
      carry = markers[i].len - 1;
    }
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

// Writes LINE and a newline to the child's stdin (fd), noting when in *sent_at (ms since t0).
static void send_input(int fd, const char* line, double t0, double* sent_at) {
  write_all(fd, line, strlen(line));
  write_all(fd, "\n", 1);
  *sent_at = now_ms() - t0;
}

int main(int argc, char** argv) {
  const char* marker = NULL;
  const char* early_marker = NULL;
  const char* send_line = NULL;
  const char* send_after = NULL;
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
    } else if (strcmp(argv[i], "--send") == 0) {
      send_line = argv[++i];
    } else if (strcmp(argv[i], "--send-after") == 0) {
      send_after = argv[++i];
    } else {
      usage();
    }
  }
  if (!marker || !*marker || (early_marker && !*early_marker) || (send_after && !*send_after) ||
      (send_after && !send_line) || (send_line && strchr(send_line, '\n')) || guest_mib <= 0 ||
      i >= argc) {
    usage();
  }
  struct marker markers[kMarkers] = {{marker, 0, -1}, {early_marker, 0, -1}, {send_after, 0, -1}};
  for (int m = 0; m < kMarkers; m++) {
    if (!markers[m].text) continue;
    markers[m].len = strlen(markers[m].text);
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
  int pipefd[2], input[2] = {-1, -1};
  if (pipe2(pipefd, O_CLOEXEC) != 0 || (send_line && pipe2(input, O_CLOEXEC) != 0)) {
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
    if (send_line) dup2(input[0], STDIN_FILENO);
    execvp(argv[i], &argv[i]);
    fprintf(stderr, "stamp: exec %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);
  double sent_at = -1;
  if (send_line) {
    close(input[0]);
    signal(SIGPIPE, SIG_IGN);  // a child gone before the line is sent is no reason to die
    if (!send_after) send_input(input[1], send_line, t0, &sent_at);
  }

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
    for (int m = 0; m < kMarkers; m++) {
      if (!markers[m].text || markers[m].at >= 0 ||
          !memmem(buf, len, markers[m].text, markers[m].len)) {
        continue;
      }
      markers[m].at = t - t0;
      if (m == kMarker && read_rss(pid, (unsigned long long)guest_mib << 20, &rss) != 0) {
        rss.total_kib = -1;
      }
      if (m == kSendAfter) send_input(input[1], send_line, t0, &sent_at);
    }
    const size_t want = carry_needed(markers);
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
      first_output, markers[kMarker].at, exit_at, status, have_rss ? rss.total_kib : -1,
      have_rss ? rss.guest_kib : -1, have_rss ? rss.total_kib - rss.guest_kib : -1, ru.ru_maxrss);
  if (early_marker) printf(" early_marker_ms=%.1f", markers[kEarlyMarker].at);
  if (send_line) printf(" sent_ms=%.1f", sent_at);
  printf("\n");
  return 0;
}
