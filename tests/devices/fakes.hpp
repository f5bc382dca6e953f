#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/backends/packet_backend.hpp"
#include "devices/bus.hpp"
#include "devices/interrupt_line.hpp"
#include "devices/platform_events.hpp"

namespace vmm::devices::testing {

// Records every level the device drives, so tests can check edges, not just the final level.
class FakeInterruptLine final : public InterruptLine {
 public:
  void set_level(bool asserted) override { levels.push_back(asserted); }
  uint32_t gsi() const override { return 4; }
  bool level() const { return !levels.empty() && levels.back(); }
  int rising_edges() const {
    int edges = 0;
    bool previous = false;
    for (bool level : levels) {
      edges += level && !previous;
      previous = level;
    }
    return edges;
  }

  std::vector<bool> levels;
};

// The two ends of a non-blocking, close-on-exec AF_UNIX socketpair of `type` (SOCK_STREAM,
// SOCK_SEQPACKET): one to hand the device as its backend's fd, one for the test to play the host.
inline std::pair<UniqueFd, UniqueFd> socket_pair(int type) {
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_errno("socketpair");
  }
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// A PacketBackend on one end of a socket_pair(SOCK_SEQPACKET): one packet per read and write, as a
// tap's with its vnet header. Offloads are accepted and ignored, or refused as a tap may.
class SocketBackend final : public PacketBackend {
 public:
  explicit SocketBackend(UniqueFd fd, bool refuse_offloads = false)
      : fd_(std::move(fd)), refuse_offloads_(refuse_offloads) {}
  int fd() const override { return fd_.get(); }
  const std::string& name() const override { return name_; }
  void set_offload(unsigned /*tun_flags*/) override {
    if (refuse_offloads_) fail("{}: TUNSETOFFLOAD: Invalid argument", name_);
  }

 private:
  UniqueFd fd_;
  bool refuse_offloads_;
  std::string name_ = "socketpair";
};

class FakePlatformEvents final : public PlatformEvents {
 public:
  void guest_request(GuestRequest request, int code) override {
    requests.emplace_back(request, code);
  }

  std::vector<std::pair<GuestRequest, int>> requests;
};

// A hostile guest calling the device directly, without the bus's range check: random reads and
// writes of 1, 2, 4 and 8 bytes at any offset. Deterministic (fixed seed).
// One byte-wide guest access at `offset` of `device`, as an inb/outb reaches it.
inline uint8_t inb(BusDevice& device, uint64_t offset) {
  uint8_t value = 0;
  device.read(offset, {&value, 1});
  return value;
}
inline void outb(BusDevice& device, uint64_t offset, uint8_t value) {
  device.write(offset, {&value, 1});
}

inline void hammer(BusDevice& device, uint64_t port_count, int accesses = 20000) {
  std::mt19937_64 random(0x5eed);
  const std::size_t sizes[] = {1, 2, 4, 8};
  uint8_t buffer[8];
  for (int i = 0; i < accesses; ++i) {
    // Mostly inside the range and just past it; now and then near the top of the address space.
    const uint64_t offset = i % 64 == 0 ? ~uint64_t{0} - random() % 8 : random() % (port_count + 8);
    const std::size_t size = sizes[random() % 4];
    if (random() % 2) {
      device.read(offset, std::span<uint8_t>(buffer, size));
    } else {
      for (auto& byte : buffer) byte = static_cast<uint8_t>(random());
      device.write(offset, std::span<const uint8_t>(buffer, size));
    }
  }
}

}  // namespace vmm::devices::testing
