// uds: the host side of vmm's Unix sockets, run in the lab's L1 (busybox nc has no Unix sockets).
//
//   uds [-v] connect PATH PORT   vmm --vsock's socket PATH: send "CONNECT PORT\n", expect
//                                "OK <host port>\n", then relay with the guest's PORT
//   uds [-v] listen PATH         listen on PATH (a guest's connection to the host's port P arrives
//                                at vmm --vsock's "<socket>_P"); accept one connection, then relay
//   uds request PATH JSON...     vmm --api-socket PATH: send each JSON line, print each response
//                                line (all on one connection; 10 s at most per response)
//
// Relaying copies stdin to the connection and the connection to stdout until both end (relay.h);
// -v adds the byte counts and the time on stderr. listen replaces a stale socket file at PATH (not
// any other file), says "uds: listening on PATH" on stderr once a peer can connect, and removes
// PATH once it has its connection. Exit status: 0 when done cleanly, 1 on an error or a refused
// CONNECT (said on stderr), 2 on usage errors.
#include "relay.h"

#include <sys/stat.h>
#include <sys/un.h>

enum { kMaxLine = 64 * 1024, kRequestTimeoutSeconds = 10 };

__attribute__((noreturn)) static void usage(void) {
  fprintf(stderr,
          "usage: uds [-v] connect PATH PORT | uds [-v] listen PATH | uds request PATH JSON...\n");
  exit(2);
}

static struct sockaddr_un address(const char* path) {
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof addr.sun_path) {
    fprintf(stderr, "uds: %s: longer than %zu bytes\n", path, sizeof addr.sun_path - 1);
    exit(2);
  }
  strcpy(addr.sun_path, path);
  return addr;
}

static int connect_to(const char* path) {
  struct sockaddr_un addr = address(path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) relay_die("socket(AF_UNIX)");
  if (connect(sock, (struct sockaddr*)&addr, sizeof addr) != 0) relay_die(path);
  return sock;
}

// Reads one line (without its '\n') into line, a byte at a time so that nothing after it is
// consumed; false at the end of the stream before a '\n'. Exits on an error or an overlong line.
static int read_line(int sock, const char* what, char* line, size_t size) {
  size_t len = 0;
  for (;;) {
    char c;
    ssize_t n = read(sock, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) relay_die(what);
    if (n == 0) {
      line[len] = '\0';
      return 0;
    }
    if (c == '\n') {
      line[len] = '\0';
      return 1;
    }
    if (len + 1 >= size) {
      fprintf(stderr, "uds: %s: a line longer than %zu bytes\n", what, size - 1);
      exit(1);
    }
    line[len++] = c;
  }
}

static int vsock_connect(const char* path, const char* port) {
  char* end = NULL;
  errno = 0;
  unsigned long value = strtoul(port, &end, 10);
  if (errno != 0 || end == port || *end != '\0' || value > 0xffffffffUL) {
    fprintf(stderr, "uds: '%s': want a port from 0 to 4294967295\n", port);
    exit(2);
  }
  int sock = connect_to(path);
  char request[32];
  int len = snprintf(request, sizeof request, "CONNECT %lu\n", value);
  if (!relay_write_all(sock, request, (size_t)len)) relay_die(path);
  char reply[64];
  int complete = read_line(sock, path, reply, sizeof reply);
  if (!complete || strncmp(reply, "OK ", 3) != 0) {
    fprintf(stderr, "uds: %s: CONNECT %lu refused (%s'%s')\n", path, value,
            complete ? "answer " : "closed after ", reply);
    exit(1);
  }
  return sock;
}

static int listen_once(const char* path) {
  struct sockaddr_un addr = address(path);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      fprintf(stderr, "uds: %s: exists and is not a socket\n", path);
      exit(1);
    }
    if (unlink(path) != 0) relay_die(path);
  }
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) relay_die("socket(AF_UNIX)");
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) != 0) relay_die(path);
  if (listen(listener, 1) != 0) relay_die(path);
  fprintf(stderr, "uds: listening on %s\n", path);
  int sock;
  do {
    sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  } while (sock < 0 && errno == EINTR);
  if (sock < 0) relay_die("accept");
  close(listener);
  if (unlink(path) != 0) relay_die(path);
  return sock;
}

static int request(const char* path, char** lines, int count) {
  int sock = connect_to(path);
  struct timeval timeout = {.tv_sec = kRequestTimeoutSeconds};
  if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) != 0) {
    relay_die("setsockopt(SO_RCVTIMEO)");
  }
  static char response[kMaxLine];
  for (int i = 0; i < count; i++) {
    if (strchr(lines[i], '\n') != NULL) {
      fprintf(stderr, "uds: a request is one line: '%s'\n", lines[i]);
      return 2;
    }
    if (!relay_write_all(sock, lines[i], strlen(lines[i])) || !relay_write_all(sock, "\n", 1)) {
      relay_die(path);
    }
    if (!read_line(sock, path, response, sizeof response)) {
      fprintf(stderr, "uds: %s: closed without a response to '%s'\n", path, lines[i]);
      return 1;
    }
    printf("%s\n", response);
    fflush(stdout);
  }
  close(sock);
  return 0;
}

int main(int argc, char** argv) {
  relay_init("uds");
  int verbose = 0;
  int arg = 1;
  if (arg < argc && strcmp(argv[arg], "-v") == 0) {
    verbose = 1;
    arg++;
  }
  if (arg >= argc) usage();
  const char* mode = argv[arg++];
  int sock;
  if (strcmp(mode, "connect") == 0 && arg + 2 == argc) {
    sock = vsock_connect(argv[arg], argv[arg + 1]);
  } else if (strcmp(mode, "listen") == 0 && arg + 1 == argc) {
    sock = listen_once(argv[arg]);
  } else if (strcmp(mode, "request") == 0 && !verbose && arg + 2 <= argc) {
    return request(argv[arg], argv + arg + 1, argc - arg - 1);
  } else {
    usage();
  }
  relay(sock, verbose);
  return 0;
}
