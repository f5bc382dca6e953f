/* Drives each virtio-blk disk vmm gives it (virtio-mmio windows from 0xd0000000, 4 KiB apart)
 * through lib/virtio.c and checks the device against the virtio 1.2 spec (5.2): features, config,
 * GET_ID, reads of a pattern the host wrote, a write + FLUSH + read-back, errors for requests past
 * the end, for an unknown type and, on a read-only disk, for a write.
 *
 * Command line: "disks=N" (default 1) disks to expect; "ro=MASK": bit i set when disk i was given
 * read-only. Each check prints "virtio-blk: diskI <check> ok" or what went wrong; exits 0 when
 * every check passed.
 *
 * The host's image pattern, shared with tests/integration/virtio_blk_test.cpp: byte j of sector
 * `lba` on disk `d` is byte j of the little-endian `lba` for j < 8, else (d * 0x40 + lba * 7 + j)
 * mod 256. The guest overwrites sector WRITE_LBA with (0xa5 ^ j * 3 ^ d) mod 256 per byte j. */
#include <stdbool.h>
#include <stdint.h>

#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "mem.h"
#include "virtio.h"

#define VIRTIO_MMIO_BASE 0xd0000000ull /* vmm::layout::kVirtioMmioStart */
#define VIRTIO_MMIO_STRIDE 0x1000ull
#define MAX_DISKS 4

#define SECTOR 512u
#define WRITE_LBA 4u
#define MIN_SECTORS 8u /* room for the reads below and WRITE_LBA */

/* virtio-blk feature bits, config layout, request types and statuses (virtio 1.2, 5.2). */
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define BLK_CONFIG_CAPACITY 0 /* u64, in 512-byte sectors */
#define BLK_CONFIG_SEG_MAX 12 /* u32 */
#define BLK_CONFIG_BLK_SIZE 20
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_UNKNOWN 0x5a /* no such type in 1.2 */
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_ID_BYTES 20
#define NO_STATUS 0xff /* preset, so a device that never writes the status byte is caught */

#define BIT(n) (1ull << (n))
#define WANTED_FEATURES                                                         \
  (BIT(VIRTIO_F_VERSION_1) | BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_RO) | \
   BIT(VIRTIO_BLK_F_BLK_SIZE) | BIT(VIRTIO_BLK_F_FLUSH))

struct blk_req_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct virtio_dev disks[MAX_DISKS];

/* The buffers of the one request in flight. */
static struct blk_req_header header;
static uint8_t data[2 * SECTOR];
static uint8_t expected[2 * SECTOR];
static uint8_t status;

static unsigned failures;

struct disk {
  unsigned index;
  struct virtio_dev* dev;
  uint64_t sectors;
  bool read_only;
};

static void check(const struct disk* d, bool ok, const char* what) {
  if (ok) {
    kprintf("virtio-blk: disk%u %s ok\n", d->index, what);
  } else {
    kprintf("virtio-blk: disk%u %s FAILED\n", d->index, what);
    ++failures;
  }
}

static uint8_t pattern_byte(unsigned disk, uint64_t lba, unsigned j) {
  return j < 8 ? (uint8_t)(lba >> (8 * j)) : (uint8_t)(disk * 0x40 + lba * 7 + j);
}

static uint8_t written_byte(unsigned disk, unsigned j) {
  return (uint8_t)(0xa5 ^ (j * 3) ^ disk);
}

static void fill_pattern(uint8_t* out, unsigned disk, uint64_t lba, unsigned sectors) {
  for (unsigned s = 0; s < sectors; ++s) {
    for (unsigned j = 0; j < SECTOR; ++j) out[s * SECTOR + j] = pattern_byte(disk, lba + s, j);
  }
}

/* Compares `got` with `want`, printing the first difference. */
static bool same_bytes(const struct disk* d, const uint8_t* got, const uint8_t* want,
                       unsigned length) {
  for (unsigned i = 0; i < length; ++i) {
    if (got[i] != want[i]) {
      kprintf("virtio-blk: disk%u byte %u is %02x, expected %02x\n", d->index, i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

/* One request: header, data split into `pieces` equal buffers (none when length is 0), status.
 * Returns the status byte, or NO_STATUS when the transfer itself failed; *written gets the used
 * length. */
static uint8_t request(const struct disk* d, uint32_t type, uint64_t sector, uint32_t length,
                       unsigned pieces, bool device_writes, uint32_t* written) {
  struct virtio_buf bufs[4];
  unsigned n = 0;
  header = (struct blk_req_header){.type = type, .sector = sector};
  bufs[n++] = (struct virtio_buf){.addr = &header, .len = sizeof(header)};
  for (unsigned i = 0; length != 0 && i < pieces; ++i) {
    bufs[n++] = (struct virtio_buf){.addr = data + i * (length / pieces),
                                    .len = length / pieces,
                                    .device_writes = device_writes};
  }
  status = NO_STATUS;
  bufs[n++] = (struct virtio_buf){.addr = &status, .len = 1, .device_writes = true};
  *written = 0;
  if (!virtio_transfer(d->dev, bufs, n, written)) return NO_STATUS;
  return *(volatile uint8_t*)&status;
}

static void print_status_mismatch(const struct disk* d, uint8_t got, uint8_t want) {
  if (got != want) kprintf("virtio-blk: disk%u status %u, expected %u\n", d->index, got, want);
}

/* Reads `sectors` at `lba` (in `pieces` data buffers) and compares them with the host pattern. */
static void check_read(const struct disk* d, uint64_t lba, unsigned sectors, unsigned pieces,
                       const char* what) {
  const uint32_t length = sectors * SECTOR;
  memset(data, 0, length);
  uint32_t written;
  const uint8_t st = request(d, VIRTIO_BLK_T_IN, lba, length, pieces, true, &written);
  print_status_mismatch(d, st, VIRTIO_BLK_S_OK);
  bool ok = st == VIRTIO_BLK_S_OK;
  if (ok && written != length + 1) {
    kprintf("virtio-blk: disk%u used length %u, expected %u\n", d->index, written, length + 1);
    ok = false;
  }
  fill_pattern(expected, d->index, lba, sectors);
  check(d, ok && same_bytes(d, data, expected, length), what);
}

static void check_status(const struct disk* d, uint32_t type, uint64_t lba, unsigned sectors,
                         bool device_writes, uint8_t want, const char* what) {
  uint32_t written;
  const uint8_t st = request(d, type, lba, sectors * SECTOR, 1, device_writes, &written);
  print_status_mismatch(d, st, want);
  check(d, st == want, what);
}

static void print_features(const char* what, unsigned index, uint64_t features) {
  static const struct {
    unsigned bit;
    const char* name;
  } names[] = {{1, "SIZE_MAX"},   {2, "SEG_MAX"},    {4, "GEOMETRY"},         {5, "RO"},
               {6, "BLK_SIZE"},   {9, "FLUSH"},      {10, "TOPOLOGY"},        {11, "CONFIG_WCE"},
               {12, "MQ"},        {13, "DISCARD"},   {14, "WRITE_ZEROES"},    {28, "INDIRECT_DESC"},
               {29, "EVENT_IDX"}, {32, "VERSION_1"}, {33, "ACCESS_PLATFORM"}, {34, "RING_PACKED"},
               {35, "IN_ORDER"}};
  char line[256];
  unsigned n = 0;
  for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); ++i) {
    if (!(features & BIT(names[i].bit))) continue;
    for (const char* p = " "; *p && n + 1 < sizeof(line); ++p) line[n++] = *p;
    for (const char* p = names[i].name; *p && n + 1 < sizeof(line); ++p) line[n++] = *p;
  }
  line[n] = '\0';
  kprintf("virtio-blk: disk%u %s %lx:%s\n", index, what, features, line);
}

/* Probe and negotiation: false when the disk can't be used at all. */
static bool bring_up(struct disk* d) {
  const uintptr_t base = VIRTIO_MMIO_BASE + d->index * VIRTIO_MMIO_STRIDE;
  if (!virtio_probe(d->dev, base, VIRTIO_ID_BLOCK)) return false;
  kprintf("virtio-blk: disk%u is a virtio-mmio v2 block device at %lx\n", d->index, base);
  const bool negotiated = virtio_negotiate(d->dev, WANTED_FEATURES);
  print_features("offers", d->index, d->dev->device_features);
  if (!negotiated) return false;
  print_features("accepted", d->index, d->dev->driver_features);
  if (!virtio_start(d->dev)) return false;
  check(d, true, "negotiation");
  return true;
}

static void check_config(struct disk* d, bool expect_read_only) {
  d->sectors = virtio_config_read64(d->dev, BLK_CONFIG_CAPACITY);
  kprintf("virtio-blk: disk%u capacity %lu sectors\n", d->index, d->sectors);
  check(d, d->sectors >= MIN_SECTORS, "capacity");
  if (d->dev->driver_features & BIT(VIRTIO_BLK_F_BLK_SIZE)) {
    kprintf("virtio-blk: disk%u blk_size %u\n", d->index,
            virtio_config_read32(d->dev, BLK_CONFIG_BLK_SIZE));
  }
  if (d->dev->driver_features & BIT(VIRTIO_BLK_F_SEG_MAX)) {
    kprintf("virtio-blk: disk%u seg_max %u\n", d->index,
            virtio_config_read32(d->dev, BLK_CONFIG_SEG_MAX));
  }
  d->read_only = d->dev->driver_features & BIT(VIRTIO_BLK_F_RO);
  if (d->read_only != expect_read_only) {
    kprintf("virtio-blk: disk%u RO feature %s, expected %s\n", d->index,
            d->read_only ? "offered" : "not offered", expect_read_only ? "offered" : "not offered");
  }
  check(d, d->read_only == expect_read_only, "read-only feature");
}

static void check_get_id(const struct disk* d) {
  memset(data, 0, VIRTIO_BLK_ID_BYTES + 1);
  uint32_t written;
  const uint8_t st = request(d, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, 1, true, &written);
  print_status_mismatch(d, st, VIRTIO_BLK_S_OK);
  /* The ID is NUL-padded when shorter than 20 bytes; data[20] stays 0 as the terminator. */
  for (unsigned i = 0; i < VIRTIO_BLK_ID_BYTES; ++i) {
    if (data[i] != 0 && (data[i] < 0x20 || data[i] > 0x7e)) data[i] = '?';
  }
  kprintf("virtio-blk: disk%u serial '%s'\n", d->index, (const char*)data);
  check(d, st == VIRTIO_BLK_S_OK, "get-id");
}

/* Writes WRITE_LBA; on a writable disk flushes and expects the new data back, on a read-only one
 * expects IOERR and the old data. */
static void check_write(const struct disk* d) {
  for (unsigned j = 0; j < SECTOR; ++j) data[j] = written_byte(d->index, j);
  uint32_t written;
  const uint8_t st = request(d, VIRTIO_BLK_T_OUT, WRITE_LBA, SECTOR, 1, false, &written);
  if (d->read_only) {
    print_status_mismatch(d, st, VIRTIO_BLK_S_IOERR);
    check(d, st == VIRTIO_BLK_S_IOERR, "write refused");
    check_read(d, WRITE_LBA, 1, 1, "read back unchanged");
    return;
  }
  print_status_mismatch(d, st, VIRTIO_BLK_S_OK);
  check(d, st == VIRTIO_BLK_S_OK, "write");
  if (d->dev->driver_features & BIT(VIRTIO_BLK_F_FLUSH)) {
    check_status(d, VIRTIO_BLK_T_FLUSH, 0, 0, false, VIRTIO_BLK_S_OK, "flush");
  } else {
    kprintf("virtio-blk: disk%u FLUSH not offered, not flushed\n", d->index);
  }
  memset(data, 0, SECTOR);
  const uint8_t read_st = request(d, VIRTIO_BLK_T_IN, WRITE_LBA, SECTOR, 1, true, &written);
  print_status_mismatch(d, read_st, VIRTIO_BLK_S_OK);
  for (unsigned j = 0; j < SECTOR; ++j) expected[j] = written_byte(d->index, j);
  check(d, read_st == VIRTIO_BLK_S_OK && same_bytes(d, data, expected, SECTOR), "read back");
}

static void test_disk(struct disk* d, bool expect_read_only) {
  if (!bring_up(d)) {
    check(d, false, "bring-up");
    return;
  }
  check_config(d, expect_read_only);
  if (d->sectors < MIN_SECTORS) return;
  check_get_id(d);
  check_read(d, 0, 1, 1, "read lba 0");
  const uint32_t seg_max = d->dev->driver_features & BIT(VIRTIO_BLK_F_SEG_MAX)
                               ? virtio_config_read32(d->dev, BLK_CONFIG_SEG_MAX)
                               : 2;
  if (seg_max >= 2) {
    check_read(d, 2, 2, 2, "read lba 2-3 in two buffers");
  } else {
    kprintf("virtio-blk: disk%u seg_max %u: no two-buffer read\n", d->index, seg_max);
  }
  check_read(d, d->sectors - 2, 2, 1, "read last two sectors");
  check_status(d, VIRTIO_BLK_T_IN, d->sectors, 1, true, VIRTIO_BLK_S_IOERR, "read past the end");
  check_status(d, VIRTIO_BLK_T_IN, d->sectors - 1, 2, true, VIRTIO_BLK_S_IOERR,
               "read across the end");
  check_status(d, VIRTIO_BLK_T_UNKNOWN, 0, 0, false, VIRTIO_BLK_S_UNSUPP, "unknown request");
  check_write(d);
}

int guest_main(const void* boot_params) {
  const char* cmdline = boot_cmdline(boot_params);
  uint64_t count = 1, ro_mask = 0;
  cmdline_get_uint(cmdline, "disks", &count);
  cmdline_get_uint(cmdline, "ro", &ro_mask);
  if (count == 0 || count > MAX_DISKS) {
    kprintf("virtio-blk: disks=%lu, this guest tests 1 to %d\n", count, MAX_DISKS);
    return EXIT_FAIL;
  }
  for (unsigned i = 0; i < count; ++i) {
    struct disk d = {.index = i, .dev = &disks[i]};
    test_disk(&d, ro_mask & BIT(i));
  }
  if (failures != 0) {
    kprintf("virtio-blk: %u checks failed\n", failures);
    return EXIT_FAIL;
  }
  kprintf("virtio-blk: all %lu disks ok\n", count);
  return EXIT_PASS;
}
