#pragma once

// What the snapshot_state fuzz target (snapshot_state_fuzz.cpp) and the program that writes its
// seeds (snapshot_state_seeds.cpp) share: the input encoding, and the virtio slot both build, a
// virtio-mmio transport over a real device on an event loop of its own, as a restored machine has
// one.

#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/net.hpp"
#include "devices/virtio/vsock.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz::snapshot {

// The input's first byte, modulo kParserCount: which parser gets the rest (see the top of
// snapshot_state_fuzz.cpp for each one's encoding).
enum Parser : uint8_t {
  kManifest,
  kArchive,
  kVcpu,
  kVm,
  kSerial,
  kI8042,
  kRtc,
  kVirtio,
  kParserCount,
};

// kArchive's flags byte.
inline constexpr uint8_t kArchiveAppendChecksum = 1;

// kVirtio's device byte, modulo kVirtioKindCount.
enum VirtioKind : uint8_t { kBlock, kNet, kVsock, kVirtioKindCount };

// kVirtio's operations on the restored transport, modulo kVirtioOpCount.
enum VirtioOp : uint8_t {
  kRegisterWrite,  // u16 offset, u8 width (mod 9), u64 value: a vCPU's access
  kRegisterRead,   // u16 offset, u8 width
  kNotify,         // u8 queue: what the queue's ioeventfd does
  kRunLoop,        // rounds of the event loop until it is idle
  kRamWrite,       // one RAM chunk
  kVirtioOpCount,
};

inline constexpr uint64_t kRamSize = 256 * 1024;
inline constexpr uint64_t kDiskSize = 64 * 1024;
// What MmioTransport::restore_state's reader is named in errors, as the machine names it.
inline constexpr const char* kVirtioSection = "virtio0";

// A RAM chunk: u32 guest address, u16 n, n bytes (what fits in RAM is written).
inline void write_ram_chunk(Reader& in, FuzzRam& ram) {
  const uint32_t gpa = in.u32();
  ram.write_clamped(gpa, in.bytes(in.u16()));
}

// A virtio-mmio transport over a fresh device of `kind` (virtio-blk on an in-memory image,
// virtio-net on a socket pair, virtio-vsock on a Unix socket), on its own event loop, with the
// device's owner inline (tests/devices/device_owner.hpp). One at a time per process: the vsock
// device's socket path is the same for all.
class VirtioRig {
 public:
  VirtioRig(const GuestMemory& memory, VirtioKind kind) {
    namespace virtio = devices::virtio;
    std::unique_ptr<virtio::VirtioDevice> device;
    switch (kind) {
      case kBlock:
        disk_ = memfd_with_pattern("vmm-fuzz-snapshot-disk", kDiskSize);
        device = std::make_unique<virtio::VirtioBlock>(
            memory, loop_, kDiskSize,
            std::make_unique<SyncIo>(disk_.get(), virtio::VirtioBlock::kQueueSize),
            virtio::BlockOptions{.serial = "fuzz"}, "vdz");
        break;
      case kNet: {
        auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
        host_ = std::move(host_end);
        device = std::make_unique<virtio::VirtioNet>(
            memory, loop_, std::make_unique<devices::testing::SocketBackend>(std::move(device_end)),
            std::array<uint8_t, 6>{0x52, 0x54, 0, 0, 0, 1}, "eth-fuzz");
        break;
      }
      default:
        device = std::make_unique<virtio::VirtioVsock>(
            loop_, 3, "/tmp/vmm-fuzz-snapshot-" + std::to_string(::getpid()) + ".sock",
            "vsock-fuzz");
        break;
    }
    queue_count_ = static_cast<uint16_t>(device->queue_max_sizes().size());
    transport_.emplace(memory, std::move(device), irq_, owner_, kVirtioSection);
  }

  devices::virtio::MmioTransport& transport() { return *transport_; }
  EventLoop& loop() { return loop_; }
  uint16_t queue_count() const { return queue_count_; }

 private:
  EventLoop loop_;
  devices::testing::InlineDeviceOwner owner_{loop_};
  FakeInterruptLine irq_;
  UniqueFd disk_;
  UniqueFd host_;  // virtio-net: the host's end of the backend's socket pair
  uint16_t queue_count_ = 0;
  // Last: the transport (and its device) goes before what the device uses.
  std::optional<devices::virtio::MmioTransport> transport_;
};

}  // namespace vmm::fuzz::snapshot
