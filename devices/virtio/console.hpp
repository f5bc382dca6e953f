#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::virtio {

// Feature bits (virtio 1.2, 5.3.3).
inline constexpr uint64_t kConsoleFeatureMultiport = uint64_t{1} << 1;

// struct virtio_console_control's events (virtio 1.2, 5.3.6.2).
inline constexpr uint16_t kConsoleDeviceReady = 0;
inline constexpr uint16_t kConsoleDeviceAdd = 1;
inline constexpr uint16_t kConsoleDeviceRemove = 2;
inline constexpr uint16_t kConsolePortReady = 3;
inline constexpr uint16_t kConsoleConsolePort = 4;
inline constexpr uint16_t kConsoleResize = 5;
inline constexpr uint16_t kConsolePortOpen = 6;
inline constexpr uint16_t kConsolePortName = 7;

#pragma pack(push, 1)
// struct virtio_console_config (virtio 1.2, 5.3.4).
struct VirtioConsoleConfig {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};
// struct virtio_console_control; PORT_NAME's name bytes follow it.
struct VirtioConsoleControl {
  uint32_t id;
  uint16_t event;
  uint16_t value;
};
#pragma pack(pop)
static_assert(sizeof(VirtioConsoleConfig) == 12);
static_assert(sizeof(VirtioConsoleControl) == 8);

// One port of a VirtioConsole, as the host sets it up.
struct ConsolePort {
  std::string name;      // sent as VIRTIO_CONSOLE_PORT_NAME ("vmm.stdout"); empty: none
  bool console = false;  // VIRTIO_CONSOLE_CONSOLE_PORT (the guest's hvc): at most one port
  // Guest -> host: its bytes go to `output_fd` (not owned, must stay open), or to
  // `output_callback` (on the loop), or nowhere if neither. A pipe, FIFO, terminal or other
  // character device must be non-blocking (O_NONBLOCK): the loop never waits on it; a socket is
  // written with MSG_DONTWAIT, a regular file as is.
  int output_fd = -1;
  std::function<void(std::span<const uint8_t>)> output_callback;
  // Host -> guest: read from `input_fd` (not owned; pollable: not a regular file) when the guest
  // has opened the port and posted buffers, one read per readiness, so it may be blocking. Its end
  // of file closes the port for the guest (VIRTIO_CONSOLE_PORT_OPEN 0: the guest reads EOF). -1:
  // no input fd (send() may still feed the port). It may be the same fd as `output_fd` (a socket).
  int input_fd = -1;
};

// What the device dropped and moved, for logs and tests.
struct ConsoleCounters {
  uint64_t control_dropped = 0;  // the guest's control messages dropped (malformed, bad port)
  uint64_t control_lost = 0;     // ours not sent: the queue of them full, or a buffer too small
  // Guest bytes dropped: an output that failed, or none given, or a flush_output() reader stalled.
  uint64_t output_discarded = 0;
};

// A virtio-console device (virtio 1.2, 5.3) with VIRTIO_CONSOLE_F_MULTIPORT: port 0's receive and
// transmit queues (0, 1), the control queues (2, 3), then port N's at 2N + 2 and 2N + 3.
//
// Control: the guest's DEVICE_READY makes the device announce each port (DEVICE_ADD); a port's
// PORT_READY is answered with CONSOLE_PORT (the console port), PORT_NAME (a named port) and
// PORT_OPEN 1 (the host side is connected); the guest's PORT_OPEN calls on_guest_open. Messages
// the device sends wait, a bounded number, for the guest's control receive buffers. A message
// from the guest that is malformed, names a port that does not exist or was not added, or is an
// event the guest may not send is logged at debug and dropped.
//
// Guest -> host: each port buffers at most kOutputBufferBytes of what the guest wrote. Transmit
// chains are read into that buffer only while it has room, and a chain goes back to the guest
// once all of it is in: an output that stops taking bytes (EAGAIN; watched for EPOLLOUT) stops
// the port's transmit queue, and the guest's writes wait in the guest. An output that fails
// (EPIPE) is given up: the port's later output is discarded, and an output-only port is removed
// (DEVICE_REMOVE), so the guest's next write to it fails as a write into a pipe without a reader
// would; a port with an input too (hvc0) stays, logged once.
//
// Host -> guest: bytes go only into receive buffers of a port the guest has opened (Linux
// discards what reaches a closed port). send()'s bytes (at most kInputBufferBytes waiting) go
// first, then input_fd's: it is watched only while a receive chain is at hand, and read at most
// that chain's size at a time. Its end of file sends PORT_OPEN 0 for the port.
//
// Limits: kMaxPorts ports; a port name of at most kMaxPortName bytes.
//
// Snapshot: refused (quiesce() throws).
//
// Threading: owned by the event loop thread (VirtioDevice). The ports' fds are watched from
// construction to destruction, each only for what the device waits for (none: not registered);
// from activation to reset the device also watches its queues' notify fds and a resume eventfd.
// Each wake-up moves at most kChainBudget chains (and kBytesBudget bytes) of a queue and signals
// the resume eventfd when it stopped early, so the loop serves everything else in between.
class VirtioConsole final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 128;
  static constexpr size_t kMaxPorts = 31;  // QEMU's: 64 queues
  static constexpr size_t kMaxPortName = 255;
  static constexpr size_t kOutputBufferBytes = 64 * 1024;
  static constexpr size_t kInputBufferBytes = 64 * 1024;
  static constexpr uint32_t kChainBudget = 64;
  static constexpr size_t kBytesBudget = 1024 * 1024;
  // Control messages waiting for the guest's buffers: a driver session queues at most 5 a port.
  static constexpr size_t kMaxControlOut = 8 * kMaxPorts;

  // Checks the ports (their number, names, at most one console, fds that exist and suit their
  // direction, no fd shared between ports): vmm::Error "virtio-console NAME: port N: ...".
  // Watches nothing until the device needs to. `memory` is what the queues point into (the chains
  // read it themselves). `name` is for logs.
  VirtioConsole(const GuestMemory& memory, EventLoop& loop, std::vector<ConsolePort> ports,
                std::string name);
  VirtioConsole(const VirtioConsole&) = delete;
  VirtioConsole& operator=(const VirtioConsole&) = delete;
  ~VirtioConsole() override;

  uint32_t device_id() const override { return kDeviceIdConsole; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(const Activation& activation) override;
  void notify(uint16_t index) override;
  void reset(ResetDone done) override;
  std::string debug_state() const override;
  // Throws: a snapshot can't hold the ports' host sides yet.
  void quiesce(std::chrono::steady_clock::time_point deadline) override;

  // On the loop thread: queues `bytes` for port `port`'s guest side. False if `port` does not
  // exist or the bytes don't fit in what is left of its kInputBufferBytes.
  bool send(uint32_t port, std::span<const uint8_t> bytes);
  // On the loop thread, or once it has stopped: writes everything the guest has given the device
  // and that it still holds (its buffers, and the chains left in the transmit queues, which go
  // back to the guest) to the ports' outputs, waiting (1 ms naps) for an output that is full:
  // what the guest wrote before it powered off is not lost to a slow reader. An output that fails,
  // or takes nothing for `stall`, is given up (its bytes counted as discarded).
  static constexpr std::chrono::milliseconds kFlushStall{250};
  void flush_output(std::chrono::milliseconds stall = kFlushStall);
  // The guest opened (true) or closed port `port` (its PORT_OPEN; a device reset closes the ports
  // it had open): called on the loop thread.
  std::function<void(uint32_t port, bool open)> on_guest_open;

  // On the owner thread.
  ConsoleCounters counters() const { return counters_; }
  // Bytes of the guest's output the port holds, not yet written.
  size_t output_buffered(uint32_t port) const { return ports_.at(port).output.size(); }

 private:
  enum class OutputKind { kNone, kWrite, kSend, kCallback };
  enum class Fill { kQueueEmpty, kBufferFull, kBudgetSpent };
  struct Budget {
    uint32_t chains;
    size_t bytes;
  };

  struct Port {
    ConsolePort config;
    OutputKind output_kind = OutputKind::kNone;
    bool input_is_socket = false;
    // Guest -> host.
    std::optional<DescriptorChain> tx_chain;  // being copied into `output`
    uint32_t tx_offset = 0;                   // bytes of tx_chain copied
    std::vector<uint8_t> output;              // at most kOutputBufferBytes
    bool output_blocked = false;              // EAGAIN: waits for EPOLLOUT
    bool output_failed = false;
    // Host -> guest.
    std::vector<uint8_t> input;               // send()'s bytes, at most kInputBufferBytes
    std::optional<DescriptorChain> rx_chain;  // popped for the next input
    bool input_ended = false;                 // input_fd's end of file (or error) seen
    bool closed_for_guest = false;            // PORT_OPEN 0 queued for the guest
    bool removed = false;  // DEVICE_REMOVE sent: an output-only port whose output failed
    // The guest's side.
    bool added = false;  // DEVICE_ADD queued
    bool ready = false;  // the guest's PORT_READY handled
    bool guest_open = false;
  };

  void on_resume();
  void on_port_events(uint32_t port, uint32_t events);
  // Moves everything that can move without waiting, then tells the driver.
  void process_all();

  // Control.
  void process_control_tx();
  void handle_control(const VirtioConsoleControl& message);
  void drop_control(const VirtioConsoleControl& message, const char* why);
  void queue_control(uint32_t port, uint16_t event, uint16_t value, std::string_view payload = {});
  void process_control_rx();

  // Guest -> host.
  void process_port_tx(uint32_t port);
  Fill fill_output(Port& port, SplitQueue* queue, Budget& budget);
  // Writes the port's buffered output until it is empty or the output would block.
  void drain_output(uint32_t port);

  // Host -> guest.
  void process_port_rx(uint32_t port);
  void read_input(uint32_t port);
  void close_for_guest(uint32_t port);
  // DEVICE_REMOVE for `port`: the guest's writes to it fail from then on.
  void remove_port(uint32_t port);

  // Whether the device waits for the port's input fd: it holds a receive chain of a port the guest
  // opened, and has nothing else for it.
  bool wants_input(const Port& port) const;
  // Watches the port's fds for what the device waits for now.
  void update_interest(uint32_t port);
  void set_interest(uint32_t port, int fd, uint32_t events);

  SplitQueue* rx_queue(uint32_t port) const;
  SplitQueue* tx_queue(uint32_t port) const;
  void check_broken(SplitQueue* queue);
  void notify_driver();
  bool active() const { return interrupt_ != nullptr; }

  EventLoop& loop_;
  const std::string name_;
  std::vector<Port> ports_;
  std::map<int, uint32_t> interest_;  // the ports' fds registered with the loop, and for what

  EventFd resume_;             // a wake-up stopped at its budget: come back
  WatchedFds watched_{loop_};  // the notify fds and resume_, while active
  std::vector<SplitQueue*> queues_;
  DeviceInterrupt* interrupt_ = nullptr;          // while active
  bool failed_ = false;                           // a queue broke: nothing moves until a reset
  bool device_ready_ = false;                     // the guest's DEVICE_READY handled
  std::deque<std::vector<uint8_t>> control_out_;  // for the guest, at most kMaxControlOut
  ConsoleCounters counters_;
  std::vector<uint8_t> staging_;  // a read from an input fd
};

}  // namespace vmm::devices::virtio
