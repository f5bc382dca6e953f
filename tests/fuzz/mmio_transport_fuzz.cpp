// The virtio-mmio transport's register interface: fuzzer-chosen reads and writes of any width at
// any offset (feature negotiation, status machine, queue setup, config space), queue
// notifications, and fuzzer-written RAM behind the queues, with a fake device that completes
// every chain it is notified about.
//
// Input: operations (see Op).

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "base/util/error.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::Activation;
using devices::virtio::MmioTransport;
using devices::virtio::SplitQueue;

constexpr uint64_t kRamSize = 64 * 1024;

// What the transport did to the fake device; outlives the device, which the transport owns.
struct DeviceState {
  EventLoop* loop = nullptr;  // where the device watches its notify fds
  std::optional<Activation> active;
  std::array<uint8_t, 16> config{};
  bool complete_on_notify = true;
  bool throw_on_activate = false;
};

class FakeDevice final : public devices::virtio::VirtioDevice {
 public:
  explicit FakeDevice(DeviceState& state) : state_(state) {}

  uint32_t device_id() const override { return devices::virtio::kDeviceIdBlock; }
  uint64_t features() const override {
    return devices::virtio::kFeatureVersion1 | devices::virtio::kFeatureRingEventIdx |
           devices::virtio::kFeatureRingIndirectDesc | 1;
  }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 8}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < state_.config.size() ? state_.config[offset + i] : 0;
    }
  }
  void activate(const Activation& activation) override {
    VMM_FUZZ_CHECK(!state_.active, "activated twice without a reset");
    VMM_FUZZ_CHECK(activation.queues.size() == 2, "%zu queues", activation.queues.size());
    if (state_.throw_on_activate) fail("backend gone");
    state_.active = activation;
    for (size_t queue = 0; queue < activation.notify_fds.size(); ++queue) {
      const int fd = activation.notify_fds[queue];
      state_.loop->add(fd, EPOLLIN, [this, fd, queue](uint32_t) {
        uint64_t count;
        [[maybe_unused]] const ssize_t n = ::read(fd, &count, sizeof(count));
        notify(static_cast<uint16_t>(queue));
      });
    }
  }
  void notify(uint16_t index) override {
    VMM_FUZZ_CHECK(state_.active && index < 2, "notify(%u) while %s", index,
                   state_.active ? "active" : "inactive");
    if (!state_.complete_on_notify) return;
    SplitQueue& queue = *state_.active->queues[index];
    while (auto chain = queue.pop()) {
      const uint32_t written = chain->writable_bytes();
      queue.add_used(std::move(*chain), written);
    }
    if (queue.needs_notification()) state_.active->interrupt->signal_used();
    if (queue.broken()) state_.active->interrupt->signal_needs_reset();
  }
  void reset(ResetDone done) override {
    for (int fd : state_.active->notify_fds) state_.loop->remove(fd);
    state_.active.reset();
    done();
  }

 private:
  DeviceState& state_;
};

enum Op : uint8_t {
  kWrite,       // u16 offset, u8 width, u64 value
  kRead,        // u16 offset, u8 width
  kRawWrite,    // u16 gpa, u8 n, n bytes
  kNotify,      // u32 queue index, as an ioeventfd delivers it
  kSignal,      // u8: the device raises used / config change / needs reset
  kDeviceMode,  // u8: bit 0 complete on notify, bit 1 fail activation
  kFarAccess,   // u64 offset, u8 width, u8 write?, u64 value: anywhere, as a buggy bus might
  kOpCount,
};

void access(MmioTransport& transport, uint64_t offset, uint8_t width_choice, bool write,
            uint64_t value) {
  uint8_t bytes[8];
  std::memcpy(bytes, &value, sizeof(bytes));
  const size_t width = width_choice % 9;  // 0..8: the odd ones too
  if (write) {
    transport.write(offset, std::span<const uint8_t>(bytes, width));
  } else {
    transport.read(offset, std::span<uint8_t>(bytes, width));
    if (offset == 0 && width == 4) {
      uint32_t magic;
      std::memcpy(&magic, bytes, 4);
      VMM_FUZZ_CHECK(magic == MmioTransport::kMagicValue, "MagicValue read %#x", magic);
    }
  }
}

void run(Reader& in) {
  FuzzRam ram(kRamSize);
  FakeInterruptLine irq;
  DeviceState state;
  EventLoop loop;
  state.loop = &loop;
  devices::testing::InlineDeviceOwner owner(loop);
  MmioTransport transport(ram.memory(), std::make_unique<FakeDevice>(state), irq, owner,
                          "virtio-fuzz");
  while (!in.empty()) {
    run_until_idle(loop);
    switch (in.u8() % kOpCount) {
      case kWrite: {
        const uint16_t offset = in.u16();
        const uint8_t width = in.u8();
        access(transport, offset, width, true, in.u64());
        break;
      }
      case kRead: {
        const uint16_t offset = in.u16();
        access(transport, offset, in.u8(), false, 0);
        break;
      }
      case kRawWrite: {
        const uint16_t gpa = in.u16();
        ram.write_clamped(gpa, in.bytes(in.u8()));
        break;
      }
      case kNotify: {
        const uint32_t queue = in.u32();
        if (queue < transport.queue_count()) {
          const uint64_t one = 1;
          [[maybe_unused]] const ssize_t n =
              ::write(transport.notify_fd(static_cast<uint16_t>(queue)), &one, sizeof(one));
        }
        break;
      }
      case kSignal: {
        const uint8_t which = in.u8() % 3;
        if (!state.active) break;
        auto* interrupt = state.active->interrupt;
        if (which == 0) interrupt->signal_used();
        if (which == 1) interrupt->signal_config_change();
        if (which == 2) interrupt->signal_needs_reset();
        break;
      }
      case kDeviceMode: {
        const uint8_t mode = in.u8();
        state.complete_on_notify = (mode & 1) != 0;
        state.throw_on_activate = (mode & 2) != 0;
        break;
      }
      case kFarAccess: {
        const uint64_t offset = in.u64();
        const uint8_t width = in.u8();
        const bool write = in.flag();
        access(transport, offset, width, write, in.u64());
        break;
      }
    }
  }
  transport.shutdown();
  VMM_FUZZ_CHECK(!state.active, "the device is still active after shutdown()");
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
