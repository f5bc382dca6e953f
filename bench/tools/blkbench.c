// blkbench: block device throughput and latency-bound IOPS, from inside a guest.
//
//   blkbench [--size MiB] [--seconds T] [--depth D] DEVICE
//
// Everything goes through O_DIRECT (no guest page cache: each request reaches the virtio disk) on
// the first --size MiB of DEVICE (default 64), in this order:
//   seq_write   1 MiB writes from offset 0 to size, then fdatasync (the flush is in the time)
//   seq_read    1 MiB reads over the same range
//   rand_qd1    4 KiB reads at random 4 KiB-aligned offsets in the range, one at a time, for T
//               seconds (default 5): one request in flight, so 1/IOPS is the round-trip latency
//   rand_qdn    the same with D threads (default 4) each doing that: up to D requests in flight
// and prints one line (MB = 10^6 bytes; times from CLOCK_MONOTONIC, the guest's own clock):
//   BLKBENCH size_mib=.. seq_write_mbs=.. seq_read_mbs=.. rand_qd1_iops=.. rand_qdn_iops=.. depth=D
// Writes destroy the device's contents. Exit status: 0 if every phase ran, 1 on an I/O error
// (reported on stderr), 2 on usage errors.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kSeqBlock = 1 << 20, kRandBlock = 4096, kMaxDepth = 64 };

static int fd = -1;
static uint64_t range_bytes;
static double rand_seconds = 5;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void* aligned_buffer(size_t size) {
  void* p = NULL;
  if (posix_memalign(&p, 4096, size) != 0) {
    fprintf(stderr, "blkbench: out of memory\n");
    exit(1);
  }
  memset(p, 0x5a, size);
  return p;
}

static void io_failed(const char* what, uint64_t offset, ssize_t n) {
  fprintf(stderr, "blkbench: %s at offset %llu: %s\n", what, (unsigned long long)offset,
          n < 0 ? strerror(errno) : "short transfer");
  exit(1);
}

// Sequential pass over the range, MB/s.
static double sequential(int write) {
  char* buf = aligned_buffer(kSeqBlock);
  double start = now_s();
  for (uint64_t off = 0; off < range_bytes; off += kSeqBlock) {
    ssize_t n =
        write ? pwrite(fd, buf, kSeqBlock, (off_t)off) : pread(fd, buf, kSeqBlock, (off_t)off);
    if (n != kSeqBlock) io_failed(write ? "write" : "read", off, n);
  }
  if (write && fdatasync(fd) != 0) io_failed("fdatasync", 0, -1);
  double elapsed = now_s() - start;
  free(buf);
  return (double)range_bytes / 1e6 / elapsed;
}

struct rand_worker {
  pthread_t thread;
  uint64_t seed;
  double deadline;
  uint64_t done;
};

static void* random_reads(void* arg) {
  struct rand_worker* w = arg;
  char* buf = aligned_buffer(kRandBlock);
  uint64_t x = w->seed, blocks = range_bytes / kRandBlock;
  // Checking the clock every request would cost as much as a request in a guest: every 16.
  while (w->done % 16 != 0 || now_s() < w->deadline) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
    uint64_t off = (x % blocks) * kRandBlock;
    ssize_t n = pread(fd, buf, kRandBlock, (off_t)off);
    if (n != kRandBlock) io_failed("random read", off, n);
    w->done++;
  }
  free(buf);
  return NULL;
}

// Random 4 KiB reads from DEPTH threads for rand_seconds, IOPS.
static double random_iops(int depth) {
  struct rand_worker workers[kMaxDepth];
  double start = now_s();
  for (int i = 0; i < depth; i++) {
    workers[i] = (struct rand_worker){.seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1),
                                      .deadline = start + rand_seconds};
    if (pthread_create(&workers[i].thread, NULL, random_reads, &workers[i]) != 0) {
      fprintf(stderr, "blkbench: cannot start thread %d\n", i);
      exit(1);
    }
  }
  uint64_t total = 0;
  for (int i = 0; i < depth; i++) {
    pthread_join(workers[i].thread, NULL);
    total += workers[i].done;
  }
  return (double)total / (now_s() - start);
}

static void usage(void) {
  fprintf(stderr, "usage: blkbench [--size MiB] [--seconds T] [--depth D] DEVICE\n");
  exit(2);
}

int main(int argc, char** argv) {
  uint64_t size_mib = 64;
  int depth = 4;
  const char* device = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      size_mib = strtoull(argv[++i], NULL, 10);
    } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      rand_seconds = strtod(argv[++i], NULL);
    } else if (strcmp(argv[i], "--depth") == 0 && i + 1 < argc) {
      depth = atoi(argv[++i]);
    } else if (argv[i][0] != '-' && device == NULL) {
      device = argv[i];
    } else {
      usage();
    }
  }
  if (device == NULL || size_mib == 0 || rand_seconds <= 0 || depth < 1 || depth > kMaxDepth)
    usage();
  range_bytes = size_mib << 20;
  fd = open(device, O_RDWR | O_DIRECT);
  if (fd < 0) {
    fprintf(stderr, "blkbench: %s: %s\n", device, strerror(errno));
    return 1;
  }
  off_t device_bytes = lseek(fd, 0, SEEK_END);
  if (device_bytes < 0 || (uint64_t)device_bytes < range_bytes) {
    fprintf(stderr, "blkbench: %s is smaller than --size %llu MiB\n", device,
            (unsigned long long)size_mib);
    return 1;
  }
  double seq_write = sequential(1);
  double seq_read = sequential(0);
  double qd1 = random_iops(1);
  double qdn = random_iops(depth);
  printf(
      "BLKBENCH size_mib=%llu seq_write_mbs=%.1f seq_read_mbs=%.1f rand_qd1_iops=%.0f "
      "rand_qdn_iops=%.0f depth=%d\n",
      (unsigned long long)size_mib, seq_write, seq_read, qd1, qdn, depth);
  return 0;
}
