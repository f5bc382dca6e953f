#pragma once

// One fuzzer-chosen guest access to a port-I/O device, as a vCPU exit delivers it: an offset
// (mostly inside the device's range, sometimes anywhere), a width of 0 to 8 bytes (the odd ones
// too: the device must cope without the bus's help) and, for a write, the value.

#include <cstdint>
#include <cstring>
#include <span>

#include "devices/bus.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {

struct PortAccess {
  uint64_t offset;
  size_t width;
  bool write;
  uint64_t value;
};

// Input: u8 kind (bit 0 write, bit 1 far offset, bits 4-7 width), u8 offset or (far) u64
// offset, u64 value for writes. Offsets past `port_count` are fine: devices must ignore them.
inline PortAccess read_port_access(Reader& in, uint64_t port_count) {
  const uint8_t kind = in.u8();
  PortAccess access{};
  access.write = (kind & 1) != 0;
  access.width = (kind >> 4) % 9;
  access.offset = (kind & 2) ? in.u64() : in.u8() % (port_count + 4);
  if (access.write) access.value = in.u64();
  return access;
}

// Performs `access` on `device`; returns what a read produced (0 for a write).
inline uint64_t perform(devices::BusDevice& device, const PortAccess& access) {
  uint8_t bytes[8];
  std::memcpy(bytes, &access.value, sizeof(bytes));
  if (access.write) {
    device.write(access.offset, std::span<const uint8_t>(bytes, access.width));
    return 0;
  }
  device.read(access.offset, std::span<uint8_t>(bytes, access.width));
  uint64_t value = 0;
  std::memcpy(&value, bytes, access.width);
  return value;
}

}  // namespace vmm::fuzz
