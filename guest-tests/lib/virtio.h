/* A small modern virtio-mmio (version 2) driver: one split virtqueue per device, one request in
 * flight at a time, completion by polling the used ring (virtio 1.2, 4.2 and 2.7). Interrupts
 * stay off; each completion must still set InterruptStatus bit 0, which the driver checks and
 * acknowledges, so the transport's interrupt path is exercised too. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_MMIO_MAGIC 0x74726976u /* "virt" */

/* Transport-independent feature bits (virtio 1.2, 6). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device IDs (virtio 1.2, 5). */
#define VIRTIO_ID_BLOCK 2

/* Descriptors per queue: enough for any request the test guests make. */
#define VIRTIO_QUEUE_SIZE 16

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};

struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};

/* The three parts of queue 0, in one page: descriptor table (16-byte aligned), driver area
 * (2-aligned) and device area (4-aligned). */
struct virtio_queue_area {
  struct virtq_desc desc[VIRTIO_QUEUE_SIZE];
  struct {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[VIRTIO_QUEUE_SIZE];
    uint16_t used_event;
  } avail __attribute__((aligned(64)));
  struct {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[VIRTIO_QUEUE_SIZE];
    uint16_t avail_event;
  } used __attribute__((aligned(64)));
} __attribute__((aligned(4096)));

struct virtio_dev {
  struct virtio_queue_area queue; /* first: keeps the page alignment obvious */
  uintptr_t base;                 /* guest-physical (= virtual) address of the MMIO window */
  uint32_t device_id;
  uint64_t device_features; /* offered */
  uint64_t driver_features; /* accepted */
  uint16_t queue_size;
  uint16_t avail_idx; /* next avail->idx to publish */
  uint16_t used_idx;  /* next used->idx to consume */
};

/* One buffer of a request; `device_writes` marks it VIRTQ_DESC_F_WRITE. */
struct virtio_buf {
  void* addr;
  uint32_t len;
  bool device_writes;
};

/* Checks magic, version 2 and the device ID at `base`; prints why not and returns false. */
bool virtio_probe(struct virtio_dev* dev, uintptr_t base, uint32_t device_id);

/* Reset, ACKNOWLEDGE, DRIVER, then accept `wanted` & offered (VERSION_1 must be offered and
 * wanted) and set FEATURES_OK, checking the device kept it. Fills device_/driver_features. */
bool virtio_negotiate(struct virtio_dev* dev, uint64_t wanted);

/* Sets up queue 0 in dev->queue (size min(QueueNumMax, VIRTIO_QUEUE_SIZE)) and sets DRIVER_OK. */
bool virtio_start(struct virtio_dev* dev);

/* Publishes `count` buffers as one descriptor chain on queue 0, notifies, and waits (TSC-bounded)
 * for the device to return it and to set InterruptStatus bit 0, which it acknowledges. Sets
 * *written to the used length. False (with a message) on a timeout or a malformed completion. */
bool virtio_transfer(struct virtio_dev* dev, const struct virtio_buf* bufs, unsigned count,
                     uint32_t* written);

/* Device-specific configuration space, read with accesses of the field's width (64-bit fields as
 * two 32-bit halves), retried until ConfigGeneration is stable. */
uint8_t virtio_config_read8(const struct virtio_dev* dev, uint32_t offset);
uint32_t virtio_config_read32(const struct virtio_dev* dev, uint32_t offset);
uint64_t virtio_config_read64(const struct virtio_dev* dev, uint32_t offset);

/* The device status register (e.g. to see DEVICE_NEEDS_RESET after a failure). */
uint32_t virtio_status(const struct virtio_dev* dev);
