// The virtio-mmio transport driving a real device (virtio-blk on an in-memory image, virtio-net on
// a socket pair, virtio-vsock on a Unix socket), as a guest reaches it: register reads and writes
// of any width at any offset (on the vCPU's side of the transport), the driver's whole init
// sequence with fuzzer-chosen features, descriptors and data in RAM, avail ring entries,
// notifications through the queues' eventfds, resets (status 0, which the transport hands to the
// device's loop and waits for), packets arriving from the host, and rounds of the event loop.
// Whatever the order, nothing may crash, hang or touch memory it should not; after the transport
// shuts the device down, no fd of the device's is left on the loop.
//
// Input: one byte choosing the device, then operations (see Op).

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "devices/virtio/net.hpp"
#include "devices/virtio/vsock.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

namespace virtio = devices::virtio;
using virtio::MmioTransport;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDataArea = 0x10000;  // above the rings of up to three queues
constexpr uint16_t kQueueSize = 256;     // what every device here offers
constexpr uint64_t kDiskSize = 64 * 1024;

// Register offsets (virtio 1.2, 4.2.2).
constexpr uint64_t kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024, kQueueSel = 0x030,
                   kQueueNum = 0x038, kQueueReady = 0x044, kStatus = 0x070, kQueueDescLow = 0x080,
                   kQueueDriverLow = 0x090, kQueueDeviceLow = 0x0a0;

enum Op : uint8_t {
  kWrite,     // u16 offset, u8 width, u64 value: a vCPU's register write
  kRead,      // u16 offset, u8 width
  kInit,      // u64 features (masked by the device's): Linux's init sequence, every queue ready
  kDesc,      // u8 queue, then a raw descriptor (write_desc)
  kData,      // bytes in the data area (write_data)
  kPublish,   // u8 queue, u16 head
  kNotify,    // u8 queue: what the ioeventfd does
  kRunLoop,   // rounds of the event loop until it is idle
  kReset,     // the driver writes status 0
  kHostSend,  // u8 n, n bytes: a packet from the host (net), a client's bytes (vsock)
  kOpCount,
};

class Harness {
 public:
  explicit Harness(Reader& in) : in_(in), ram_(kRamSize) {
    std::unique_ptr<virtio::VirtioDevice> device;
    switch (in.u8() % 3) {
      case 0: {
        disk_ = memfd_with_pattern("vmm-fuzz-disk", kDiskSize);
        device = std::make_unique<virtio::VirtioBlock>(
            ram_.memory(), loop_, kDiskSize,
            std::make_unique<SyncIo>(disk_.get(), virtio::VirtioBlock::kQueueSize),
            virtio::BlockOptions{.serial = "fuzz"}, "vdz");
        break;
      }
      case 1: {
        auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
        host_ = std::move(host_end);
        device = std::make_unique<virtio::VirtioNet>(
            ram_.memory(), loop_,
            std::make_unique<devices::testing::SocketBackend>(std::move(device_end)),
            std::array<uint8_t, 6>{0x52, 0x54, 0, 0, 0, 1}, "eth-fuzz");
        break;
      }
      default:
        uds_path_ = "/tmp/vmm-fuzz-mmio-" + std::to_string(::getpid()) + ".sock";
        device = std::make_unique<virtio::VirtioVsock>(loop_, 3, uds_path_, "vsock-fuzz");
        break;
    }
    queue_count_ = device->queue_max_sizes().size();
    device_features_ = device->features();
    configs_ = stacked_queues(static_cast<int>(queue_count_), kQueueSize);
    for (const virtio::QueueConfig& config : configs_) drivers_.emplace_back(ram_.memory(), config);
    transport_.emplace(ram_.memory(), std::move(device), irq_, owner_, "virtio-fuzz");
  }

  void run() {
    while (!in_.empty()) step();
    run_until_idle(loop_);
    // Unplugged as the machine does it: the transport resets the device, which leaves the loop.
    transport_->shutdown();
    const uint64_t before = loop_.dispatched();
    for (size_t q = 0; q < queue_count_; ++q) signal(q);
    loop_.run_once(0);
    VMM_FUZZ_CHECK(loop_.dispatched() == before, "the device still watches fds once unplugged");
    transport_.reset();
  }

 private:
  void step() {
    switch (in_.u8() % kOpCount) {
      case kWrite: {
        const uint16_t offset = in_.u16();
        const uint8_t width = in_.u8();
        access(offset, width, true, in_.u64());
        break;
      }
      case kRead: {
        const uint16_t offset = in_.u16();
        access(offset, in_.u8(), false, 0);
        break;
      }
      case kInit: initialize(in_.u64()); break;
      case kDesc: {
        QueueDriver& driver = drivers_[in_.u8() % queue_count_];
        write_desc(in_, driver, kDataArea, kRamSize);
        break;
      }
      case kData: write_data(in_, ram_, kDataArea); break;
      case kPublish: {
        QueueDriver& driver = drivers_[in_.u8() % queue_count_];
        driver.publish(in_.u16());
        break;
      }
      case kNotify: signal(in_.u8() % queue_count_); break;
      case kRunLoop: run_until_idle(loop_); break;
      case kReset: w32(kStatus, 0); break;
      case kHostSend: host_send(in_.bytes(in_.u8())); break;
    }
  }

  void access(uint64_t offset, uint8_t width_choice, bool write, uint64_t value) {
    uint8_t bytes[8];
    std::memcpy(bytes, &value, sizeof(bytes));
    const size_t width = width_choice % 9;  // 0..8: the odd ones too
    if (write) {
      transport_->write(offset, std::span<const uint8_t>(bytes, width));
    } else {
      transport_->read(offset, std::span<uint8_t>(bytes, width));
    }
  }
  void w32(uint64_t offset, uint32_t value) {
    transport_->write(offset, std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&value), 4));
  }
  void w64(uint64_t low_register, uint64_t value) {
    w32(low_register, static_cast<uint32_t>(value));
    w32(low_register + 4, static_cast<uint32_t>(value >> 32));
  }

  // virtio_dev_probe and vm_setup_vq, every queue at its stacked_queues() rings.
  void initialize(uint64_t features) {
    features = (features & device_features_) | virtio::kFeatureVersion1;
    w32(kStatus, 0);
    w32(kStatus, virtio::kStatusAcknowledge);
    w32(kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    w32(kDriverFeaturesSel, 1);
    w32(kDriverFeatures, static_cast<uint32_t>(features >> 32));
    w32(kDriverFeaturesSel, 0);
    w32(kDriverFeatures, static_cast<uint32_t>(features));
    const uint32_t features_ok =
        virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk;
    w32(kStatus, features_ok);
    for (size_t q = 0; q < queue_count_; ++q) {
      w32(kQueueSel, static_cast<uint32_t>(q));
      w32(kQueueNum, kQueueSize);
      w64(kQueueDescLow, configs_[q].desc_table);
      w64(kQueueDriverLow, configs_[q].avail_ring);
      w64(kQueueDeviceLow, configs_[q].used_ring);
      w32(kQueueReady, 1);
      drivers_[q].restart();
    }
    w32(kStatus, features_ok | virtio::kStatusDriverOk);
  }

  // The guest's QueueNotify write as KVM's ioeventfd turns it into an event.
  void signal(size_t q) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n =
        ::write(transport_->notify_fd(static_cast<uint16_t>(q)), &one, sizeof(one));
  }

  void host_send(std::span<const uint8_t> bytes) {
    if (host_) {
      [[maybe_unused]] const ssize_t n =
          ::send(host_.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
      return;
    }
    if (uds_path_.empty()) return;
    // A host program on the vsock socket: connects (once), then writes what the fuzzer chose,
    // "CONNECT <port>\n" lines included when it finds them.
    if (!client_) {
      client_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::strncpy(address.sun_path, uds_path_.c_str(), sizeof(address.sun_path) - 1);
      [[maybe_unused]] const int ret =
          ::connect(client_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
    }
    [[maybe_unused]] const ssize_t n =
        ::send(client_.get(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  devices::testing::InlineDeviceOwner owner_{loop_};
  FakeInterruptLine irq_;
  UniqueFd disk_;
  UniqueFd host_;
  UniqueFd client_;
  std::string uds_path_;
  size_t queue_count_ = 0;
  uint64_t device_features_ = 0;
  std::vector<virtio::QueueConfig> configs_;
  std::vector<QueueDriver> drivers_;
  std::optional<MmioTransport> transport_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
