// qmp: QEMU's machine protocol from a shell, for the benchmarks inside the nested lab's L1 (busybox
// nc has no Unix sockets, and QMP wants a handshake and skips events).
//
//   qmp PATH COMMAND...
//
// Connects to QEMU's -qmp unix:PATH, reads the greeting, enters command mode (qmp_capabilities),
// then sends each COMMAND (one JSON object on one line, e.g. '{"execute":"stop"}') and waits for
// its answer, skipping the events that come in between. A "migrate" command returns before the
// migration is done, so after its answer query-migrate is asked every 5 ms until the migration
// has completed (or failed). Each answer line is printed (for migrate, the last query-migrate's
// answer, with QEMU's own "total-time"). At most 60 s per answer, 300 s per migration.
// Exit status: 0 when every command succeeded, 1 on an error answer, a failed migration, a lost
// connection or a timeout (said on stderr), 2 on usage errors.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { kMaxLine = 256 * 1024, kAnswerTimeoutMs = 60 * 1000, kMigrationTimeoutMs = 300 * 1000 };
enum { kMigrationPollNs = 5 * 1000 * 1000 };

static int sock = -1;
static char pending[kMaxLine];  // bytes read past the last line handed out
static size_t pending_len = 0;

__attribute__((noreturn)) static void die(const char* what) {
  fprintf(stderr, "qmp: %s\n", what);
  exit(1);
}

static void send_all(const char* p, size_t len) {
  while (len > 0) {
    ssize_t n = send(sock, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("lost the connection while sending");
    p += n;
    len -= (size_t)n;
  }
}

static void write_line(const char* line) {
  send_all(line, strlen(line));
  send_all("\n", 1);
}

// Reads the next line from QEMU into line (without its "\r\n"), waiting up to timeout_ms.
static void read_line(char* line, int timeout_ms) {
  for (;;) {
    char* end = memchr(pending, '\n', pending_len);
    if (end) {
      size_t len = (size_t)(end - pending);
      if (len > 0 && pending[len - 1] == '\r') len--;
      memcpy(line, pending, len);
      line[len] = '\0';
      pending_len -= (size_t)(end + 1 - pending);
      memmove(pending, end + 1, pending_len);
      return;
    }
    if (pending_len == sizeof pending) die("a line longer than 256 KiB");
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) die("no answer in time");
    ssize_t n = read(sock, pending + pending_len, sizeof pending - pending_len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("QEMU closed the connection");
    pending_len += (size_t)n;
  }
}

// Sends command and returns its answer (in answer), skipping events; exits on an error answer.
static void execute(const char* command, char* answer) {
  write_line(command);
  for (;;) {
    read_line(answer, kAnswerTimeoutMs);
    if (strstr(answer, "\"event\"")) continue;
    if (strstr(answer, "\"error\"")) {
      fprintf(stderr, "qmp: %s: %s\n", command, answer);
      exit(1);
    }
    if (strstr(answer, "\"return\"")) return;
    fprintf(stderr, "qmp: %s: unexpected line: %s\n", command, answer);
    exit(1);
  }
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Asks query-migrate until the migration is over; its last answer goes into answer.
static void wait_for_migration(char* answer) {
  const long long deadline = now_ms() + kMigrationTimeoutMs;
  const struct timespec pause = {.tv_nsec = kMigrationPollNs};
  for (;;) {
    execute("{\"execute\":\"query-migrate\"}", answer);
    if (strstr(answer, "\"completed\"")) return;
    if (strstr(answer, "\"failed\"") || strstr(answer, "\"cancelled\"")) {
      fprintf(stderr, "qmp: migration failed: %s\n", answer);
      exit(1);
    }
    if (now_ms() > deadline) die("the migration did not complete in time");
    nanosleep(&pause, NULL);
  }
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: qmp PATH COMMAND...\n");
    return 2;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (strlen(argv[1]) >= sizeof addr.sun_path) {
    fprintf(stderr, "qmp: %s: longer than %zu bytes\n", argv[1], sizeof addr.sun_path - 1);
    return 2;
  }
  strcpy(addr.sun_path, argv[1]);
  sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0 || connect(sock, (struct sockaddr*)&addr, sizeof addr) != 0) {
    fprintf(stderr, "qmp: %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  static char line[kMaxLine];
  read_line(line, kAnswerTimeoutMs);
  if (!strstr(line, "\"QMP\"")) die("no QMP greeting");
  execute("{\"execute\":\"qmp_capabilities\"}", line);
  for (int i = 2; i < argc; i++) {
    if (strchr(argv[i], '\n')) {
      fprintf(stderr, "qmp: a command is one line: '%s'\n", argv[i]);
      return 2;
    }
    execute(argv[i], line);
    if (strstr(argv[i], "\"migrate\"")) wait_for_migration(line);
    printf("%s\n", line);
    fflush(stdout);
  }
  close(sock);
  return 0;
}
