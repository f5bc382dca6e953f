#pragma once

#include <array>
#include <cstdint>

#include "base/memory/guest_memory.hpp"
#include "devices/interrupt_line.hpp"

namespace vmm::devices {

// The host side of the VM Generation ID that firmware/acpi describes (VGEN and its Generic Event
// Device): a random 128-bit ID at a fixed guest-physical address, and the GED's interrupt line.
// Each vmm process writes a new ID when it creates the device, at boot and at every restore, so no
// two guests restored from one snapshot share one; notify_guest() then makes Linux's vmgenid driver
// read it again and, seeing it changed, reseed the guest's RNG. Nothing of it goes into a snapshot:
// the ID lives in guest RAM, and the address and GSI are the machine's constants.
class VmGenerationId {
 public:
  using Id = std::array<uint8_t, 16>;

  // Writes a fresh random ID at `id_address`. Throws vmm::Error when the host has no randomness to
  // give or the ID does not fit in `memory`. `notify_line` must outlive the device.
  VmGenerationId(const GuestMemory& memory, uint64_t id_address, InterruptLine& notify_line);

  // Raises one edge on the GED's line, whose _EVT notifies VGEN. After a restore, call it once the
  // saved irqchip and LAPIC state are back in KVM (restoring them would drop the edge).
  void notify_guest() { notify_line_.pulse(); }

  // The ID written, for the machine to log.
  const Id& id() const { return id_; }

 private:
  InterruptLine& notify_line_;
  Id id_;
};

// 16 bytes from getrandom(2). Throws vmm::Error if the call fails.
VmGenerationId::Id random_generation_id();

}  // namespace vmm::devices
