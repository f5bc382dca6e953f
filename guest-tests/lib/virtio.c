#include "virtio.h"

#include "console.h"
#include "x86.h"

/* virtio-mmio version 2 registers (virtio 1.2, 4.2.2). */
#define MMIO_MAGIC 0x000
#define MMIO_VERSION 0x004
#define MMIO_DEVICE_ID 0x008
#define MMIO_DEVICE_FEATURES 0x010
#define MMIO_DEVICE_FEATURES_SEL 0x014
#define MMIO_DRIVER_FEATURES 0x020
#define MMIO_DRIVER_FEATURES_SEL 0x024
#define MMIO_QUEUE_SEL 0x030
#define MMIO_QUEUE_NUM_MAX 0x034
#define MMIO_QUEUE_NUM 0x038
#define MMIO_QUEUE_READY 0x044
#define MMIO_QUEUE_NOTIFY 0x050
#define MMIO_INTERRUPT_STATUS 0x060
#define MMIO_INTERRUPT_ACK 0x064
#define MMIO_STATUS 0x070
/* 64-bit queue addresses: the low half here, the high half 4 bytes on. */
#define MMIO_QUEUE_DESC_LOW 0x080
#define MMIO_QUEUE_DRIVER_LOW 0x090
#define MMIO_QUEUE_DEVICE_LOW 0x0a0
#define MMIO_CONFIG_GENERATION 0x0fc
#define MMIO_CONFIG 0x100

/* Device status bits (virtio 1.2, 2.1). */
#define STATUS_ACKNOWLEDGE 1u
#define STATUS_DRIVER 2u
#define STATUS_DRIVER_OK 4u
#define STATUS_FEATURES_OK 8u
#define STATUS_NEEDS_RESET 64u
#define STATUS_FAILED 128u

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

#define INTERRUPT_USED_BUFFER 1u

/* How long a request or a reset may take: seconds at any plausible TSC rate, generous for an
 * emulated guest on a busy host. */
#define WAIT_CYCLES 10000000000ull

/* Keeps the compiler from moving ring accesses across each other; x86 (TSO) needs no fence for
 * ordinary memory shared with the device, and the MMIO accesses trap. */
#define barrier() __asm__ volatile("" ::: "memory")

static uint32_t mmio_read32(const struct virtio_dev* dev, uint32_t offset) {
  return *(volatile const uint32_t*)(dev->base + offset);
}

static void mmio_write32(const struct virtio_dev* dev, uint32_t offset, uint32_t value) {
  *(volatile uint32_t*)(dev->base + offset) = value;
}

static void write_address(const struct virtio_dev* dev, uint32_t low_offset, const void* p) {
  const uint64_t address = (uintptr_t)p;
  mmio_write32(dev, low_offset, (uint32_t)address);
  mmio_write32(dev, low_offset + 4, (uint32_t)(address >> 32));
}

uint32_t virtio_status(const struct virtio_dev* dev) {
  return mmio_read32(dev, MMIO_STATUS);
}

static void fail_device(const struct virtio_dev* dev) {
  mmio_write32(dev, MMIO_STATUS, virtio_status(dev) | STATUS_FAILED);
}

bool virtio_probe(struct virtio_dev* dev, uintptr_t base, uint32_t device_id) {
  dev->base = base;
  const uint32_t magic = mmio_read32(dev, MMIO_MAGIC);
  if (magic != VIRTIO_MMIO_MAGIC) {
    kprintf("virtio: %lx: magic %x, not a virtio-mmio device\n", base, magic);
    return false;
  }
  const uint32_t version = mmio_read32(dev, MMIO_VERSION);
  if (version != 2) {
    kprintf("virtio: %lx: version %u, expected 2 (modern)\n", base, version);
    return false;
  }
  dev->device_id = mmio_read32(dev, MMIO_DEVICE_ID);
  if (dev->device_id != device_id) {
    kprintf("virtio: %lx: device ID %u, expected %u\n", base, dev->device_id, device_id);
    return false;
  }
  return true;
}

static bool reset(const struct virtio_dev* dev) {
  mmio_write32(dev, MMIO_STATUS, 0);
  const uint64_t start = rdtsc();
  while (virtio_status(dev) != 0) {
    if (rdtsc() - start > WAIT_CYCLES) {
      kprintf("virtio: %lx: status stays %x after a reset\n", dev->base, virtio_status(dev));
      return false;
    }
    cpu_relax();
  }
  return true;
}

bool virtio_negotiate(struct virtio_dev* dev, uint64_t wanted) {
  if (!reset(dev)) return false;
  mmio_write32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE);
  mmio_write32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);

  mmio_write32(dev, MMIO_DEVICE_FEATURES_SEL, 1);
  dev->device_features = (uint64_t)mmio_read32(dev, MMIO_DEVICE_FEATURES) << 32;
  mmio_write32(dev, MMIO_DEVICE_FEATURES_SEL, 0);
  dev->device_features |= mmio_read32(dev, MMIO_DEVICE_FEATURES);
  const uint64_t version_1 = 1ull << VIRTIO_F_VERSION_1;
  if (!(dev->device_features & wanted & version_1)) {
    kprintf("virtio: %lx: VERSION_1 not offered (features %lx)\n", dev->base, dev->device_features);
    fail_device(dev);
    return false;
  }

  dev->driver_features = dev->device_features & wanted;
  mmio_write32(dev, MMIO_DRIVER_FEATURES_SEL, 0);
  mmio_write32(dev, MMIO_DRIVER_FEATURES, (uint32_t)dev->driver_features);
  mmio_write32(dev, MMIO_DRIVER_FEATURES_SEL, 1);
  mmio_write32(dev, MMIO_DRIVER_FEATURES, (uint32_t)(dev->driver_features >> 32));
  mmio_write32(dev, MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  const uint32_t status = virtio_status(dev);
  if (!(status & STATUS_FEATURES_OK)) {
    kprintf("virtio: %lx: device refused features %lx (status %x)\n", dev->base,
            dev->driver_features, status);
    fail_device(dev);
    return false;
  }
  return true;
}

bool virtio_start(struct virtio_dev* dev) {
  struct virtio_queue_area* q = &dev->queue;
  mmio_write32(dev, MMIO_QUEUE_SEL, 0);
  if (mmio_read32(dev, MMIO_QUEUE_READY) != 0) {
    kprintf("virtio: %lx: queue 0 ready before setup\n", dev->base);
    fail_device(dev);
    return false;
  }
  const uint32_t max = mmio_read32(dev, MMIO_QUEUE_NUM_MAX);
  if (max == 0) {
    kprintf("virtio: %lx: queue 0 does not exist\n", dev->base);
    fail_device(dev);
    return false;
  }
  dev->queue_size = max < VIRTIO_QUEUE_SIZE ? (uint16_t)max : VIRTIO_QUEUE_SIZE;
  dev->avail_idx = 0;
  dev->used_idx = 0;
  q->avail.flags = 0; /* we want used-buffer notifications: they set InterruptStatus */
  q->avail.idx = 0;
  q->used.idx = 0;
  mmio_write32(dev, MMIO_QUEUE_NUM, dev->queue_size);
  write_address(dev, MMIO_QUEUE_DESC_LOW, q->desc);
  write_address(dev, MMIO_QUEUE_DRIVER_LOW, &q->avail);
  write_address(dev, MMIO_QUEUE_DEVICE_LOW, &q->used);
  barrier();
  mmio_write32(dev, MMIO_QUEUE_READY, 1);
  mmio_write32(dev, MMIO_STATUS,
               STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  const uint32_t status = virtio_status(dev);
  if (status & (STATUS_NEEDS_RESET | STATUS_FAILED) || !(status & STATUS_DRIVER_OK)) {
    kprintf("virtio: %lx: status %x after DRIVER_OK\n", dev->base, status);
    return false;
  }
  return true;
}

/* Waits for InterruptStatus bit 0 (the device may raise it just after publishing the used
 * element) and acknowledges what was set. */
static bool take_used_interrupt(const struct virtio_dev* dev) {
  const uint64_t start = rdtsc();
  uint32_t pending;
  while (!((pending = mmio_read32(dev, MMIO_INTERRUPT_STATUS)) & INTERRUPT_USED_BUFFER)) {
    if (rdtsc() - start > WAIT_CYCLES) {
      kprintf("virtio: %lx: used buffer without InterruptStatus bit 0 (status %x)\n", dev->base,
              pending);
      return false;
    }
    cpu_relax();
  }
  mmio_write32(dev, MMIO_INTERRUPT_ACK, pending);
  return true;
}

bool virtio_transfer(struct virtio_dev* dev, const struct virtio_buf* bufs, unsigned count,
                     uint32_t* written) {
  struct virtio_queue_area* q = &dev->queue;
  if (count == 0 || count > dev->queue_size) {
    kprintf("virtio: %lx: a chain of %u buffers does not fit the queue\n", dev->base, count);
    return false;
  }
  /* One request at a time: the chain always starts at descriptor 0. */
  for (unsigned i = 0; i < count; ++i) {
    q->desc[i].addr = (uintptr_t)bufs[i].addr;
    q->desc[i].len = bufs[i].len;
    q->desc[i].flags = (uint16_t)((i + 1 < count ? VIRTQ_DESC_F_NEXT : 0) |
                                  (bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0));
    q->desc[i].next = (uint16_t)(i + 1 < count ? i + 1 : 0);
  }
  q->avail.ring[dev->avail_idx % dev->queue_size] = 0;
  barrier();
  q->avail.idx = ++dev->avail_idx;
  barrier();
  mmio_write32(dev, MMIO_QUEUE_NOTIFY, 0);

  const uint64_t start = rdtsc();
  while (*(volatile uint16_t*)&q->used.idx == dev->used_idx) {
    if (rdtsc() - start > WAIT_CYCLES) {
      kprintf("virtio: %lx: request not completed (status %x)\n", dev->base, virtio_status(dev));
      return false;
    }
    cpu_relax();
  }
  barrier();
  const uint16_t used = *(volatile uint16_t*)&q->used.idx;
  const struct virtq_used_elem elem = q->used.ring[dev->used_idx % dev->queue_size];
  ++dev->used_idx;
  if (used != dev->used_idx || elem.id != 0) {
    kprintf("virtio: %lx: used idx %u (expected %u), id %u (expected 0)\n", dev->base, used,
            dev->used_idx, elem.id);
    return false;
  }
  *written = elem.len;
  return take_used_interrupt(dev);
}

uint8_t virtio_config_read8(const struct virtio_dev* dev, uint32_t offset) {
  return *(volatile const uint8_t*)(dev->base + MMIO_CONFIG + offset);
}

uint32_t virtio_config_read32(const struct virtio_dev* dev, uint32_t offset) {
  return mmio_read32(dev, MMIO_CONFIG + offset);
}

uint64_t virtio_config_read64(const struct virtio_dev* dev, uint32_t offset) {
  uint32_t generation, low, high;
  do {
    generation = mmio_read32(dev, MMIO_CONFIG_GENERATION);
    low = mmio_read32(dev, MMIO_CONFIG + offset);
    high = mmio_read32(dev, MMIO_CONFIG + offset + 4);
  } while (mmio_read32(dev, MMIO_CONFIG_GENERATION) != generation);
  return (uint64_t)high << 32 | low;
}
