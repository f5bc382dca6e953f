// virtio-console: the fuzzer plays the guest driver (control messages with fuzzer-chosen ports,
// events, values and sizes; transmit chains on every port; receive buffers; raw descriptors,
// notifications, resets) and the host (writing to and closing the ports' input pipes, reading and
// closing their output pipes, send(), flush_output()). The used rings must hold only entries the
// driver made available, and at the end, once the host has stopped reading and the device has
// flushed, every transmit chain must be back.
//
// Input: u8 port count (1 to 3), a u8 of flags per port (bit 0 console, bit 1 an output pipe,
// bit 2 an output callback, bit 3 an input pipe, bit 4 a name), a u32 of negotiated features
// (masked by what the device offers; VERSION_1 always), then operations (see Op).

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/console.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/virtio_harness.hpp"

namespace vmm::fuzz {
namespace {

using devices::virtio::ConsolePort;
using devices::virtio::VirtioConsole;
namespace virtio = devices::virtio;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDataArea = 0x20000;  // to the end of RAM, above the queues (stacked_queues)
constexpr uint64_t kSlotSize = 0x400;    // one per descriptor index, for control and transmit
constexpr uint64_t kRxBufferArea = kDataArea + 0x40000;  // 0x1000 per buffer, 64 of them
constexpr uint16_t kControlRx = 2;
constexpr uint16_t kControlTx = 3;
constexpr uint32_t kMaxPorts = 3;

enum Op : uint8_t {
  kControl,    // u8 id choice (bit 7: a raw u32 follows), u16 event, u16 value, u8 length
  kTxData,     // u8 port, u8 index, u8 n, n bytes: one readable descriptor, notified
  kRxBuffers,  // u8 queue choice (a port's or the control receive queue), u8 count, u16 len
  kDesc,       // u8 queue, u8 index, u32 address choice, u32 len, u16 flags, u16 next
  kData,       // u32 offset into the data area, u8 n, n bytes
  kPublish,    // u8 queue, u16 head
  kNotify,     // u16 queue index
  kRunLoop,    // one round of the event loop
  kHostWrite,  // u8 port, u8 n, n bytes into its input pipe
  kHostRead,   // u8 port: drains its output pipe
  kHostClose,  // u8 port, u8 which: bit 0 the input's writer (EOF), else the output's reader
  kSend,       // u8 port, u8 n, n bytes through send()
  kFlush,      // the host stops reading (every output reader closed), then flush_output()
  kReset,      // the driver resets the device and sets it up again
  kOpCount,
};

// A pipe with both ends non-blocking and room for one page: the device meets a full one soon.
struct Pipe {
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2");
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
    ::fcntl(fds[1], F_SETPIPE_SZ, 4096);
  }
  UniqueFd read_end;
  UniqueFd write_end;
};

struct HostPort {
  std::optional<Pipe> output;  // the device writes write_end; the host reads read_end
  std::optional<Pipe> input;   // the host writes write_end; the device reads read_end
};

class Harness {
 public:
  explicit Harness(Reader& in) : in_(in), ram_(kRamSize), guest_(ram_.memory(), configs(in)) {
    // A write to an output pipe whose reader is gone fails with EPIPE (vmm's loop thread blocks
    // SIGPIPE too).
    ::signal(SIGPIPE, SIG_IGN);
    std::vector<ConsolePort> ports;
    for (uint32_t index = 0; index < port_count_; ++index) {
      const uint8_t flags = in.u8();
      ConsolePort port;
      HostPort host;
      port.console = index == 0 && (flags & 1) != 0;
      if (flags & 2) {
        host.output.emplace();
        port.output_fd = host.output->write_end.get();
      } else if (flags & 4) {
        port.output_callback = [this](std::span<const uint8_t> bytes) {
          callback_bytes_ += bytes.size();
        };
      }
      if (flags & 8) {
        host.input.emplace();
        port.input_fd = host.input->read_end.get();
      }
      if (flags & 16) port.name = "port" + std::to_string(index);
      ports.push_back(std::move(port));
      host_.push_back(std::move(host));
    }
    const uint32_t wanted = in.u32();
    device_.emplace(ram_.memory(), loop_, std::move(ports), "console-fuzz");
    guest_.activate(*device_, (wanted | virtio::kFeatureVersion1) & device_->features());
  }

  void run() {
    while (!in_.empty()) {
      step();
      guest_.check_used();
    }
    // The host stops reading; the machine stops: everything the guest wrote comes back.
    device_->notify(kControlTx);
    run_until_idle(loop_);
    flush();
    guest_.check_used();
    // A broken queue stops the whole device (until a reset): control chains wait.
    if (!any_queue_broken()) guest_.check_all_returned(kControlTx, "control transmit chains");
    for (uint32_t port = 0; port < port_count_; ++port) {
      guest_.check_all_returned(tx_queue(port), "transmit chains");
    }
    device_.reset();
  }

 private:
  // Reads the port count; the queues it makes.
  std::vector<virtio::QueueConfig> configs(Reader& in) {
    port_count_ = 1 + in.u8() % kMaxPorts;
    return stacked_queues(static_cast<int>(2 * (port_count_ + 1)), VirtioConsole::kQueueSize);
  }
  static uint16_t rx_queue(uint32_t port) {
    return static_cast<uint16_t>(port == 0 ? 0 : 2 * port + 2);
  }
  static uint16_t tx_queue(uint32_t port) { return static_cast<uint16_t>(rx_queue(port) + 1); }
  size_t queue_count() const { return 2 * (port_count_ + 1); }
  bool any_queue_broken() {
    for (size_t q = 0; q < queue_count(); ++q) {
      if (guest_.queue(q).broken()) return true;
    }
    return false;
  }
  uint32_t port() { return in_.u8() % port_count_; }

  // Bytes as one readable descriptor `index` on queue `q`, published and notified.
  void publish_readable(uint16_t q, uint8_t index, std::span<const uint8_t> bytes) {
    const uint64_t gpa = kDataArea + kSlotSize * index;
    ram_.write_clamped(gpa, bytes);
    QueueDriver& driver = guest_.driver(q);
    driver.desc(index, gpa, static_cast<uint32_t>(bytes.size()), 0, 0);
    driver.publish(index);
    device_->notify(q);
  }

  void control() {
    const uint8_t choice = in_.u8();
    virtio::VirtioConsoleControl message{};
    message.id = (choice & 0x80) != 0 ? in_.u32() : choice % (port_count_ + 1);
    message.event = in_.u16();
    message.value = in_.u16();
    const uint8_t length = in_.u8() % 16;
    uint8_t bytes[16] = {};
    std::memcpy(bytes, &message, sizeof(message));
    publish_readable(kControlTx, static_cast<uint8_t>(next_control_++),
                     std::span<const uint8_t>(bytes, length == 0 ? sizeof(message) : length));
  }

  void rx_buffers() {
    const uint8_t choice = in_.u8();
    const uint16_t q = choice & 0x80 ? kControlRx : rx_queue(choice % port_count_);
    const uint8_t count = in_.u8() % 32;
    const uint32_t len = in_.u16() % 0x1001;
    QueueDriver& driver = guest_.driver(q);
    for (uint8_t i = 0; i < count; ++i) {
      const uint16_t index = next_rx_++;
      driver.desc(index, kRxBufferArea + 0x1000ull * (index % 64), len, virtio::kVirtqDescFWrite,
                  0);
      driver.publish(index & (VirtioConsole::kQueueSize - 1));
    }
    device_->notify(q);
  }

  // Every output reader closed (EPIPE from then on), then the device's final flush.
  void flush() {
    for (HostPort& host : host_) {
      if (host.output) host.output->read_end.reset();
    }
    device_->flush_output();
  }

  void step() {
    switch (in_.u8() % kOpCount) {
      case kControl: control(); break;
      case kTxData: {
        const uint32_t p = port();
        const uint8_t index = in_.u8();
        publish_readable(tx_queue(p), index, in_.bytes(in_.u8()));
        break;
      }
      case kRxBuffers: rx_buffers(); break;
      case kDesc:
        write_desc(in_, guest_.driver(in_.u8() % queue_count()), kDataArea, kRamSize);
        break;
      case kData: write_data(in_, ram_, kDataArea); break;
      case kPublish: {
        QueueDriver& driver = guest_.driver(in_.u8() % queue_count());
        driver.publish(in_.u16());
        break;
      }
      case kNotify: device_->notify(in_.u16()); break;
      case kRunLoop: loop_.run_once(0); break;
      case kHostWrite: {
        HostPort& host = host_[port()];
        const auto bytes = in_.bytes(in_.u8());
        if (host.input && host.input->write_end) {
          [[maybe_unused]] const ssize_t n =
              ::write(host.input->write_end.get(), bytes.data(), bytes.size());
        }
        break;
      }
      case kHostRead: {
        HostPort& host = host_[port()];
        uint8_t buffer[8192];
        if (host.output && host.output->read_end) {
          [[maybe_unused]] const ssize_t n =
              ::read(host.output->read_end.get(), buffer, sizeof(buffer));
        }
        break;
      }
      case kHostClose: {
        HostPort& host = host_[port()];
        const uint8_t which = in_.u8();
        if ((which & 1) != 0 && host.input) host.input->write_end.reset();
        if ((which & 1) == 0 && host.output) host.output->read_end.reset();
        break;
      }
      case kSend: {
        const uint32_t p = port();
        device_->send(p, in_.bytes(in_.u8()));
        break;
      }
      case kFlush: flush(); break;
      case kReset: guest_.reset(*device_, loop_); break;
    }
  }

  Reader& in_;
  FuzzRam ram_;
  EventLoop loop_;
  uint32_t port_count_ = 1;
  GuestDriver guest_;
  std::vector<HostPort> host_;
  uint64_t callback_bytes_ = 0;
  uint16_t next_control_ = 0;
  uint16_t next_rx_ = 0;
  std::optional<VirtioConsole> device_;
};

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run_harness<vmm::fuzz::Harness>)
