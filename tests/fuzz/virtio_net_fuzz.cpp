// virtio-net receive and transmit: the fuzzer plays the guest driver on both queues (descriptors,
// transmit headers and frames in RAM, receive buffers, notifications, resets) and the host side
// of a SOCK_SEQPACKET socketpair standing in for the tap (packets of any size and content, and
// draining what the guest sent). The used rings must hold only entries the driver made
// available, and once the host has drained everything every transmit chain must be back.
//
// Input: a u32 of negotiated features (masked by what the device offers; VERSION_1 always), one
// byte (bit 0: the backend refuses the offloads), then operations (see Op).

#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/event/event_loop.hpp"
#include "devices/virtio/net.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::VirtioNet;
namespace virtio = devices::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDataArea = 0x8000;    // to the end of RAM, above the queues (stacked_queues)
constexpr size_t kMaxHostPacket = 70000;  // beyond the device's staging buffer

enum Op : uint8_t {
  kDesc,        // u8 queue, u8 index, u32 address choice, u32 len, u16 flags, u16 next
  kData,        // u32 offset into the data area, u8 n, n bytes
  kPublish,     // u8 queue, u16 head
  kAdvance,     // u8 queue, u8 count
  kNotify,      // u16 queue index
  kRunLoop,     // one round of the event loop: backend readable/writable
  kHostSend,    // u16 length, u8 n, n bytes (the rest of the packet is a pattern)
  kHostDrain,   // the host reads everything the guest sent
  kReset,       // the driver resets the device and sets it up again
  kUsedEvent,   // u8 queue, u16
  kAvailFlags,  // u8 queue, u16
  kOpCount,
};

class Harness {
 public:
  explicit Harness(Reader& in)
      : in_(in), ram_(kRamSize), guest_(ram_.memory(), stacked_queues(2, VirtioNet::kQueueSize)) {
    const uint32_t wanted = in.u32();
    const bool refuse_offloads = in.flag();
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      throw_errno("socketpair");
    }
    peer_ = UniqueFd(fds[1]);
    checks_tx_ = !refuse_offloads;
    device_.emplace(
        ram_.memory(), loop_,
        std::make_unique<devices::testing::SocketBackend>(UniqueFd(fds[0]), refuse_offloads),
        std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, "eth0 (fuzz0)");
    guest_.activate(*device_, (wanted | virtio::kFeatureVersion1) & device_->features());
  }

  void run() {
    while (!in_.empty()) {
      step();
      guest_.check_used();
    }
    // With the host draining, the device must work through every transmit chain: a round that
    // returns none means it has stopped (a full socket takes a few packets per round).
    for (int round = 0; round < 1024; ++round) {
      const uint16_t before = guest_.driver(1).used_idx();
      drain_host();
      device_->notify(1);
      run_until_idle(loop_);
      if (guest_.driver(1).used_idx() == before) break;
    }
    guest_.check_used();
    if (checks_tx_) guest_.check_all_returned(1, "transmit chains");
    device_.reset();
  }

 private:
  void drain_host() {
    static std::vector<uint8_t> packet(kMaxHostPacket);
    while (recv(peer_.get(), packet.data(), packet.size(), MSG_DONTWAIT) >= 0) {
    }
  }

  QueueDriver& driver() { return guest_.driver(in_.u8() & 1); }

  void step() {
    switch (in_.u8() % kOpCount) {
      case kDesc: write_desc(in_, driver(), kDataArea, kRamSize); break;
      case kData: write_data(in_, ram_, kDataArea); break;
      case kPublish: {
        QueueDriver& d = driver();
        d.publish(in_.u16());
        break;
      }
      case kAdvance: {
        QueueDriver& d = driver();
        d.advance(in_.u8());
        break;
      }
      case kNotify: device_->notify(in_.u16()); break;
      case kRunLoop: loop_.run_once(0); break;
      case kHostSend: {
        const size_t length = in_.u16() * kMaxHostPacket / 0xffff;
        const auto head = in_.bytes(in_.u8());
        std::vector<uint8_t> packet(length);
        for (size_t i = 0; i < length; ++i) {
          packet[i] = i < head.size() ? head[i] : static_cast<uint8_t>(i * 13);
        }
        // A full socket buffer just drops it, as a tap with a full queue would.
        send(peer_.get(), packet.data(), packet.size(), MSG_DONTWAIT);
        break;
      }
      case kHostDrain: drain_host(); break;
      case kReset: guest_.reset(*device_, loop_); break;
      case kUsedEvent: {
        QueueDriver& d = driver();
        d.set_used_event(in_.u16());
        break;
      }
      case kAvailFlags: {
        QueueDriver& d = driver();
        d.set_avail_flags(in_.u16());
        break;
      }
    }
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  GuestDriver guest_;
  UniqueFd peer_;
  bool checks_tx_ = false;
  std::optional<VirtioNet> device_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
