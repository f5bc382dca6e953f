#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/util/state_stream.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::devices::virtio::testing {

// A device's part of a snapshot as MmioTransport::save_state lays it out: each queue's state,
// then the device's own.
inline std::vector<uint8_t> save_device(const std::vector<SplitQueue*>& queues,
                                        const VirtioDevice& device) {
  StateWriter out;
  for (const SplitQueue* queue : queues) queue->save_state(out);
  StateWriter own;
  device.save_state(own);
  out.put_bytes(own.bytes());
  return out.take();
}

// Restores it as MmioTransport::restore_state does: the queues, then the device activated with
// them, then its own state. Throws what they throw.
inline void restore_device(const std::vector<uint8_t>& bytes, const Activation& activation,
                           VirtioDevice& device) {
  StateReader in(bytes, "device");
  for (SplitQueue* queue : activation.queues) queue->restore_state(in);
  device.activate(activation);
  const std::vector<uint8_t> own = in.get_bytes(bytes.size());
  StateReader own_in(own, "device");
  device.restore_state(own_in);
  own_in.expect_end();
  in.expect_end();
}

// The guest's RAM as a restore finds it: a copy of the snapshot's.
struct RestoredRam {
  explicit RestoredRam(const std::vector<uint8_t>& snapshot) : ram(snapshot) {}
  std::vector<uint8_t> ram;
  GuestMemory memory = GuestMemory::from_regions({{0, ram.size(), ram.data()}});
};

}  // namespace vmm::devices::virtio::testing
