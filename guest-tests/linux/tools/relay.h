// relay.h: what the lab's socket tools (vsockio.c, uds.c) share: a two-way copy between
// stdin/stdout and a connected stream socket, like nc, with half-close done right.
//
// One thread copies stdin to the socket and then shuts the socket's sending half (the peer sees
// the end of the stream); the main thread copies the socket to stdout until the peer's end of
// stream, then closes stdout. relay() returns when both are done, so neither direction is cut
// short by the other ending first (busybox nc quits when either ends). Blocking I/O in two
// threads cannot deadlock when both sides send at once.
//
// With verbose set, one line on stderr at the end: "<tool>: in=<bytes> out=<bytes> seconds=<s>"
// (in: socket to stdout; seconds from the call, i.e. from the connection, to both directions done;
// CLOCK_MONOTONIC: in a guest, the guest's own clock).
#ifndef LAB_TOOLS_RELAY_H
#define LAB_TOOLS_RELAY_H

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kRelayBuffer = 64 * 1024 };

static const char* relay_tool = "relay";  // the tool's name in messages: set by main

__attribute__((noreturn)) static void relay_die(const char* what) {
  fprintf(stderr, "%s: %s: %s\n", relay_tool, what, strerror(errno));
  exit(1);
}

static double relay_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Writes all of buf to fd; false (errno set) on an error.
static int relay_write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 0;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 1;
}

// Copies from to to until from's end; the bytes copied, or -1 (errno set) on an error, with
// *failed naming the side that failed.
static int64_t relay_copy(int from, int to, const char* from_name, const char* to_name,
                          const char** failed) {
  char buf[kRelayBuffer];
  int64_t total = 0;
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n == 0) return total;
    if (n < 0) {
      if (errno == EINTR) continue;
      *failed = from_name;
      return -1;
    }
    if (!relay_write_all(to, buf, (size_t)n)) {
      *failed = to_name;
      return -1;
    }
    total += n;
  }
}

struct relay_out {
  int sock;
  int64_t bytes;
  const char* failed;
  int error;
};

static void* relay_stdin_to_socket(void* arg) {
  struct relay_out* out = arg;
  out->bytes = relay_copy(STDIN_FILENO, out->sock, "read stdin", "write socket", &out->failed);
  if (out->bytes < 0) {
    out->error = errno;
  } else if (shutdown(out->sock, SHUT_WR) != 0) {
    out->failed = "shutdown socket";
    out->error = errno;
    out->bytes = -1;
  }
  return NULL;
}

// The two-way copy over the connected socket sock; exits the process with status 1 on an error.
static void relay(int sock, int verbose) {
  double start = relay_now();
  struct relay_out out = {.sock = sock};
  pthread_t thread;
  int err = pthread_create(&thread, NULL, relay_stdin_to_socket, &out);
  if (err != 0) {
    errno = err;
    relay_die("pthread_create");
  }
  const char* failed = NULL;
  int64_t in = relay_copy(sock, STDOUT_FILENO, "read socket", "write stdout", &failed);
  if (in < 0) relay_die(failed);
  if (close(STDOUT_FILENO) != 0) relay_die("close stdout");
  pthread_join(thread, NULL);
  if (out.bytes < 0) {
    errno = out.error;
    relay_die(out.failed);
  }
  if (verbose) {
    fprintf(stderr, "%s: in=%lld out=%lld seconds=%.3f\n", relay_tool, (long long)in,
            (long long)out.bytes, relay_now() - start);
  }
}

// A peer that goes away must be an error message, not a silent SIGPIPE death.
static void relay_init(const char* tool) {
  relay_tool = tool;
  signal(SIGPIPE, SIG_IGN);
}

#endif
