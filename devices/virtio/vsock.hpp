#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/vsock/connection.hpp"
#include "devices/virtio/vsock/packet.hpp"

namespace vmm::devices::virtio {

// What the device dropped and moved, for logs and tests.
struct VsockCounters {
  uint64_t rx_packets = 0;       // packets written into receive chains
  uint64_t rx_bad_buffers = 0;   // receive chains too small for a header and a byte, returned empty
  uint64_t tx_packets = 0;       // well-formed packets from the driver
  uint64_t tx_dropped = 0;       // malformed chains and headers (dropped, or answered with RST)
  uint64_t credit_overruns = 0;  // connections reset because the guest sent beyond its credit
  uint64_t rsts_dropped = 0;     // RSTs not sent: too many waiting for receive buffers
};

// A virtio-vsock device (virtio 1.2, 5.10), stream sockets only, with Firecracker's host side: a
// listening Unix socket at `uds_path`.
//
// Host-initiated: a program connects to uds_path and writes "CONNECT <port>\n"; the device picks
// a host port (from 2^30 up) and sends the guest a REQUEST; the guest's RESPONSE makes the device
// answer "OK <host port>\n" and the socket then carries the stream; an RST closes it.
// Guest-initiated: a REQUEST to host port P connects to "<uds_path>_P" (RESPONSE, or RST when
// nothing listens there).
//
// Flow control is virtio-vsock's credit. Guest data waits in a per-connection buffer of at most
// kBufAlloc bytes (our buf_alloc) while the socket would block; a guest that sends beyond its
// credit gets its connection reset. Socket data is read only when the guest has credit and a
// receive chain is at hand, straight into that chain: a readable socket is not watched again
// until a read finds it empty, so nothing spins while the guest has no credit or no buffers.
//
// Teardown: the guest's SHUTDOWN shuts the socket's matching direction (its SEND after the
// buffered data); the socket's EOF becomes a SHUTDOWN to the guest (RCV too once the socket hung
// up entirely). A connection both of whose directions are finished ends with an RST to the
// guest. A device reset closes every socket. The event queue is unused: no
// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET is sent (the guest cid never changes while it runs, and the
// driver's own reset already drops its connections).
//
// Limits: kMaxConnections connections, kMaxPendingClients host programs that have not yet
// written their CONNECT line; no timeouts (a guest that never answers a REQUEST, or a program
// that never writes its line, keeps its slot until it closes or the device resets).
//
// Threading: notify() and the fd handlers run on the event loop thread, activate() and reset()
// on vCPU threads; all take the device's mutex. The loop's registrations are changed only on its
// thread: reset() shuts the sockets down at once and leaves closing them to the loop.
class VirtioVsock final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kMaxConnections = 256;
  static constexpr size_t kMaxPendingClients = 32;
  // "CONNECT 4294967295\n" is 19 bytes.
  static constexpr size_t kMaxConnectLine = 32;
  static constexpr uint32_t kFirstHostPort = uint32_t{1} << 30;

  // Binds and listens on `uds_path` (a stale socket file is replaced; a live one or a non-socket
  // is refused with vmm::Error "PATH: in use" / "PATH: exists and is not a socket"); unlinked in
  // the destructor. Its fd is watched on `loop`. `guest_cid` must be 3 to 2^32 - 2 (vmm::Error
  // "guest cid N: ..."). `name` is for logs.
  VirtioVsock(const GuestMemory& memory, EventLoop& loop, uint64_t guest_cid, std::string uds_path,
              std::string name);
  VirtioVsock(const VirtioVsock&) = delete;
  VirtioVsock& operator=(const VirtioVsock&) = delete;
  ~VirtioVsock() override;

  uint32_t device_id() const override { return kDeviceIdVsock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override {
    return {kQueueSize, kQueueSize, kQueueSize};
  }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  // guest_cid is read-only: ignored.
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  void activate(const Activation& activation) override;
  void notify(uint16_t index) override;
  void reset() override;

  VsockCounters counters() const;
  size_t connection_count() const;

 private:
  // Receive packets written per wakeup before yielding to the other fds (the kick fd brings us
  // back).
  static constexpr int kRxBudget = 256;
  static constexpr size_t kMaxQueuedRsts = 512;

  using Key = uint64_t;  // host port << 32 | guest port
  static Key key_of(uint32_t host_port, uint32_t guest_port) {
    // The analyzer takes UINT32_MAX for -1 here; the operand is an unsigned 64-bit value.
    // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
    return uint64_t{host_port} << 32 | guest_port;
  }

  // Control packets a connection owes the guest, sent in this order (SHUTDOWN after the data).
  // A CREDIT_REQUEST is decided when the data cannot go.
  enum Pending : uint32_t {
    kSendRequest = 1,
    kSendResponse = 2,
    kSendCreditUpdate = 4,
    kSendShutdown = 8,  // after the data: queued when the socket's EOF is read
  };

  struct Entry {
    explicit Entry(vsock::Connection c) : conn(std::move(c)) {}
    vsock::Connection conn;
    uint32_t pending = 0;
    uint32_t shutdown_flags = 0;     // of the SHUTDOWN to send
    bool readable = false;           // the socket may hold data or EOF: not watched for EPOLLIN
    bool hung_up = false;            // EPOLLHUP/ERR: out of the loop, draining what is left
    bool host_eof = false;           // a read returned EOF
    bool eof_reported = false;       // the guest got our SHUTDOWN
    bool host_write_closed = false;  // the socket takes no more data
    bool guest_shut_rcv = false;
    bool guest_shut_send = false;
    bool shut_wr_done = false;
    bool credit_requested = false;  // CREDIT_REQUEST sent since the guest's credit ran out
    bool queued = false;            // in rx_ready_
    bool registered = true;         // with the loop
    uint32_t events = 0;            // what the loop watches
  };

  struct Rst {
    uint32_t host_port;
    uint32_t guest_port;
    uint16_t type;
  };

  // A host program that connected to uds_path and has not finished its CONNECT line.
  struct Client {
    UniqueFd fd;
    std::string line;
  };

  void on_listener();
  void on_client(int fd);
  void on_socket(Key key, int fd, uint32_t events);
  void on_kick();
  void connect_line(int fd, const std::string& line);

  void process_tx();
  void handle_tx(const DescriptorChain& chain);
  void handle_packet(const vsock::Header& header, const DescriptorChain& chain);
  void connect_to_host(const vsock::Header& header);
  void drop_tx(const DescriptorChain& chain, vsock::Verdict verdict);

  void process_rx();
  std::optional<DescriptorChain> pop_rx_chain();
  // Writes the next packet `entry` owes the guest into `chain`: its size, or 0 if none.
  uint32_t fill_rx(Entry& entry, const DescriptorChain& chain);
  uint32_t write_packet(const DescriptorChain& chain, vsock::Header header,
                        std::span<const uint8_t> payload);
  vsock::Header header_for(uint32_t host_port, uint32_t guest_port, uint16_t op) const;

  // After any change to a connection: ends it if both directions are done, else updates what the
  // loop watches and schedules it for receive. `key` may be gone afterwards.
  void settle(Key key);
  bool wants_rx(const Entry& entry) const;
  bool flush(Entry& entry);  // false: the socket broke (the caller resets the connection)
  void close(Key key, bool send_rst);
  void queue_rst(uint32_t host_port, uint32_t guest_port, uint16_t type);
  void pause_listener();
  void resume_listener();

  void check_broken(SplitQueue* queue, bool& failed, const char* what);
  void notify_driver();
  void stop_locked();
  void reap_graveyard();
  bool active() const { return rx_queue_ != nullptr; }

  const GuestMemory& memory_;
  EventLoop& loop_;
  const uint64_t guest_cid_;
  const std::string uds_path_;
  const std::string name_;
  UniqueFd listener_;
  EventFd kick_;  // runs the loop side: closing reset's sockets, receive work beyond a budget

  mutable std::mutex mutex_;
  SplitQueue* rx_queue_ = nullptr;  // while active
  SplitQueue* tx_queue_ = nullptr;
  DeviceInterrupt* interrupt_ = nullptr;
  bool rx_failed_ = false;
  bool tx_failed_ = false;
  bool rx_out_of_buffers_ = false;  // until the driver notifies queue 0
  bool listener_paused_ = false;    // accept() failed for want of fds

  std::unordered_map<Key, std::unique_ptr<Entry>> connections_;
  std::unordered_map<int, Client> clients_;
  std::deque<Key> rx_ready_;  // connections with something for the guest, round robin
  std::deque<Rst> rsts_;      // RSTs to connections that are gone
  std::optional<DescriptorChain> rx_chain_;
  std::vector<uint8_t> staging_;
  std::vector<UniqueFd> graveyard_;  // sockets reset() shut down, for the loop to close
  uint32_t next_host_port_ = kFirstHostPort;
  VsockCounters counters_;
  bool warned_tx_ = false;
  bool warned_rx_buffer_ = false;
  bool warned_credit_ = false;
  bool warned_accept_ = false;
};

}  // namespace vmm::devices::virtio
