/* The hostile guest of issue 11, for the first virtio-blk disk: keeps its queue full for ever.
 *
 * It brings the disk up through lib/virtio.c, checks once that the device refuses a request of an
 * unknown type at once (status UNSUPP: nothing goes to the disk, so no in-flight cap ever trips),
 * then makes that chain the head of every ring slot and loops: avail->idx = used->idx + size, so
 * the ring is full again as soon as the device moves on, with a QueueNotify every NOTIFY_EVERY
 * rounds (a doorbell per refill would let the device catch up). Each step is legal and the queue
 * never drains: vmm must stay able to pause, resume and stop the machine (and to end it at its
 * --timeout) while its event loop answers the flood.
 *
 * The flood makes no exit to vmm: the doorbell is an ioeventfd, handled inside KVM, and the clock
 * is the TSC. A port access would hand the vCPU back to vmm, which then notices a stop by itself
 * and ends the flood, whatever its devices do. So the TSC rate is measured first against the CMOS
 * clock (the host's wall clock: a second or two of port reads, before the flood), and the guest
 * prints only twice: "virtio-race: flooding queue 0 (size N)" when the flood starts and, after a
 * second of it, "virtio-race: 1 s, C chains answered" (the device's progress seen from the ring).
 * Then nothing. "seconds=N" (default 60) is a safety net for a vmm that can't stop it: after N
 * seconds of flooding the guest prints "virtio-race: gave up flooding after N s ..." and exits 1.
 * A healthy vmm stops it long before. */
#include <stdbool.h>
#include <stdint.h>

#include "boot_params.h"
#include "console.h"
#include "exit.h"
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define VIRTIO_MMIO_BASE 0xd0000000ull /* vmm::layout::kVirtioMmioStart: the first disk */

#define VIRTIO_BLK_T_UNKNOWN 0x5a /* no such type in virtio 1.2 */
#define VIRTIO_BLK_S_UNSUPP 2
#define NO_STATUS 0xff

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define MMIO_QUEUE_NOTIFY 0x050

/* Rounds between two doorbells, and between two looks at the clock. */
#define NOTIFY_EVERY 1024u /* a power of two dividing CLOCK_EVERY */
#define CLOCK_EVERY 65536u

#define CMOS_INDEX 0x70
#define CMOS_DATA 0x71
#define CMOS_SECONDS 0x00

#define BIT(n) (1ull << (n))

struct blk_req_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct virtio_dev disk;
static struct blk_req_header header;
static uint8_t status;

/* The CMOS clock's seconds register, in whatever format register B says: only its changes count. */
static uint8_t cmos_seconds(void) {
  outb(CMOS_INDEX, CMOS_SECONDS);
  return inb(CMOS_DATA);
}

/* TSC cycles in a second of the CMOS clock: from one change of its seconds register to the next
 * (0 when it doesn't tick within about a minute of any plausible TSC). */
static uint64_t tsc_per_second(void) {
  const uint64_t give_up = rdtsc() + 200000000000ull;
  uint8_t seconds = cmos_seconds();
  uint64_t edge = 0;
  for (int edges = 0; edges < 2;) {
    const uint8_t now = cmos_seconds();
    if (now != seconds) {
      seconds = now;
      if (++edges == 1) edge = rdtsc();
    } else if (rdtsc() > give_up) {
      return 0;
    }
  }
  return rdtsc() - edge;
}

/* Publishes the refused request once, the ordinary way, and checks the device's answer. */
static bool refused_at_once(void) {
  const struct virtio_buf bufs[] = {
      {.addr = &header, .len = sizeof(header)},
      {.addr = &status, .len = 1, .device_writes = true},
  };
  header = (struct blk_req_header){.type = VIRTIO_BLK_T_UNKNOWN};
  status = NO_STATUS;
  uint32_t written = 0;
  if (!virtio_transfer(&disk, bufs, 2, &written)) return false;
  const uint8_t got = *(volatile uint8_t*)&status;
  if (got != VIRTIO_BLK_S_UNSUPP) {
    kprintf("virtio-race: the unknown request got status %u, expected %u\n", got,
            VIRTIO_BLK_S_UNSUPP);
    return false;
  }
  return true;
}

int guest_main(const void* boot_params) {
  uint64_t limit_seconds = 60;
  cmdline_get_uint(boot_cmdline(boot_params), "seconds", &limit_seconds);
  if (!virtio_probe(&disk, VIRTIO_MMIO_BASE, VIRTIO_ID_BLOCK) ||
      !virtio_negotiate(&disk, BIT(VIRTIO_F_VERSION_1)) || !virtio_start(&disk)) {
    kprintf("virtio-race: no usable virtio-blk disk at %lx\n", (uint64_t)VIRTIO_MMIO_BASE);
    return EXIT_FAIL;
  }
  if (!refused_at_once()) return EXIT_FAIL;

  const uint64_t second = tsc_per_second();
  if (second == 0) {
    kprintf("virtio-race: the CMOS clock does not tick\n");
    return EXIT_FAIL;
  }

  /* virtio_transfer left the chain (header, then status) in descriptors 0 and 1: head 0 in every
   * slot from now on. */
  struct virtio_queue_area* q = &disk.queue;
  const uint16_t size = disk.queue_size;
  for (uint16_t i = 0; i < size; ++i) q->avail.ring[i] = 0;
  volatile uint16_t* avail_idx = &q->avail.idx;
  const volatile uint16_t* used_idx = &q->used.idx;
  volatile uint32_t* notify = (volatile uint32_t*)(disk.base + MMIO_QUEUE_NOTIFY);
  kprintf("virtio-race: flooding queue 0 (size %u)\n", size);

  /* Chains the device answered: counted at each doorbell, when the 16-bit used index can't have
   * wrapped (at most `size` new chains per round, NOTIFY_EVERY * size < 65536). */
  uint64_t answered = 0;
  uint16_t counted = *used_idx;
  bool reported = false;
  const uint64_t start = rdtsc();
  for (uint64_t round = 1;; ++round) {
    *avail_idx = (uint16_t)(*used_idx + size);
    if (round % NOTIFY_EVERY != 0) continue;
    *notify = 0;
    const uint16_t used = *used_idx;
    answered += (uint16_t)(used - counted);
    counted = used;
    if (round % CLOCK_EVERY != 0) continue;
    const uint64_t elapsed = rdtsc() - start;
    if (!reported && elapsed >= second) {
      kprintf("virtio-race: 1 s, %lu chains answered\n", answered);
      reported = true;
    }
    if (elapsed >= limit_seconds * second) {
      kprintf("virtio-race: gave up flooding after %lu s (%lu rounds, %lu chains answered)\n",
              limit_seconds, round, answered);
      return EXIT_FAIL;
    }
  }
}
