#pragma once

#include <cstdint>
#include <span>

namespace vmm::devices {

// Legacy ISA devices decode 8-bit ports. A wider guest access (inw/inl) reaches them as
// consecutive byte accesses, the way the ISA bus splits it; ports outside the device's
// `port_count` float high (read all-ones, writes vanish). The Bus already refuses accesses that
// leave a range, but the devices don't rely on it. Callers hold the device's lock.
template <typename ReadPort>
void read_ports(uint64_t offset, std::span<uint8_t> data, uint64_t port_count,
                ReadPort&& read_port) {
  for (uint64_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    data[i] = (port >= offset && port < port_count) ? read_port(port) : 0xff;
  }
}

template <typename WritePort>
void write_ports(uint64_t offset, std::span<const uint8_t> data, uint64_t port_count,
                 WritePort&& write_port) {
  for (uint64_t i = 0; i < data.size(); ++i) {
    const uint64_t port = offset + i;
    if (port >= offset && port < port_count) write_port(port, data[i]);
  }
}

}  // namespace vmm::devices
