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

#include "devices/virtio/net.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "vmm/event/event_loop.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::Activation;
using devices::virtio::QueueConfig;
using devices::virtio::SplitQueue;
using devices::virtio::VirtioNet;
namespace virtio = devices::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDescTable[2] = {0x0000, 0x1000};  // 256 entries: 4 KiB each
constexpr uint64_t kAvail[2] = {0x2000, 0x3000};
constexpr uint64_t kUsed[2] = {0x4000, 0x5000};
constexpr uint64_t kDataArea = 0x8000;    // to the end of RAM
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
  explicit Harness(Reader& in) : in_(in), ram_(kRamSize) {
    const uint32_t wanted = in.u32();
    const bool refuse_offloads = in.flag();
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
      throw_errno("socketpair");
    }
    peer_ = UniqueFd(fds[1]);
    checks_tx_ = !refuse_offloads;
    device_.emplace(ram_.memory(), loop_,
                    std::make_unique<SocketPacketBackend>(UniqueFd(fds[0]), refuse_offloads),
                    std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}, "eth0 (fuzz0)");
    features_ = (wanted | virtio::kFeatureVersion1) & device_->features();
    for (int q = 0; q < 2; ++q) {
      configs_[q] =
          QueueConfig{.size = VirtioNet::kQueueSize,
                      .desc_table = kDescTable[q],
                      .avail_ring = kAvail[q],
                      .used_ring = kUsed[q],
                      .event_idx = (features_ & virtio::kFeatureRingEventIdx) != 0,
                      .indirect_desc = (features_ & virtio::kFeatureRingIndirectDesc) != 0};
      queues_.push_back(std::make_unique<SplitQueue>(ram_.memory(), VirtioNet::kQueueSize));
      drivers_.emplace_back(ram_.memory(), configs_[q]);
    }
    activate();
  }

  void run() {
    while (!in_.empty()) {
      step();
      for (QueueDriver& driver : drivers_) driver.check_used();
    }
    // With the host draining, the device must work through every transmit chain: a round that
    // returns none means it has stopped (a full socket takes a few packets per round).
    for (int round = 0; round < 1024; ++round) {
      const uint16_t before = drivers_[1].used_idx();
      drain_host();
      device_->notify(1);
      drain_loop();
      if (drivers_[1].used_idx() == before) break;
    }
    for (QueueDriver& driver : drivers_) driver.check_used();
    if (checks_tx_ && !queues_[1]->broken()) {
      VMM_FUZZ_CHECK(drivers_[1].used_total() == drivers_[1].published_total(),
                     "%llu transmit chains made available, %llu returned",
                     static_cast<unsigned long long>(drivers_[1].published_total()),
                     static_cast<unsigned long long>(drivers_[1].used_total()));
    }
    device_.reset();
  }

 private:
  void activate() {
    for (int q = 0; q < 2; ++q) queues_[q]->activate(configs_[q]);
    device_->activate(Activation{features_, {queues_[0].get(), queues_[1].get()}, &interrupt_});
  }

  void drain_loop() {
    for (int round = 0; round < 64; ++round) {
      const uint64_t before = loop_.dispatched();
      loop_.run_once(0);
      if (loop_.dispatched() == before) return;
    }
  }

  void drain_host() {
    static std::vector<uint8_t> packet(kMaxHostPacket);
    while (recv(peer_.get(), packet.data(), packet.size(), MSG_DONTWAIT) >= 0) {
    }
  }

  QueueDriver& driver() { return drivers_[in_.u8() & 1]; }

  void step() {
    switch (in_.u8() % kOpCount) {
      case kDesc: {
        QueueDriver& d = driver();
        const uint8_t index = in_.u8();
        const uint64_t addr = pick_address(in_, kDataArea, kRamSize);
        const uint32_t len = in_.u32();
        const uint16_t flags = in_.u16();
        d.desc(index, addr, len, flags, in_.u16());
        break;
      }
      case kData: {
        const uint64_t offset = in_.u32() % (kRamSize - kDataArea);
        ram_.write_clamped(kDataArea + offset, in_.bytes(in_.u8()));
        break;
      }
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
      case kReset:
        device_->reset();
        for (int q = 0; q < 2; ++q) {
          queues_[q]->reset();
          drivers_[q].restart();
        }
        activate();
        break;
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
  UniqueFd peer_;
  bool checks_tx_ = false;
  uint64_t features_ = 0;
  QueueConfig configs_[2];
  std::vector<std::unique_ptr<SplitQueue>> queues_;
  std::vector<QueueDriver> drivers_;
  FakeDeviceInterrupt interrupt_;
  std::optional<VirtioNet> device_;
};

}  // namespace
}  // namespace vmm::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vmm::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vmm::fuzz::Reader in(data, size);
  vmm::fuzz::Harness(in).run();
  return 0;
}
