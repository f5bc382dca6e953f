#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/descriptor_chain.hpp"
#include "devices/virtio/vsock/connection.hpp"
#include "devices/virtio/vsock/packet.hpp"

namespace vmm::devices::virtio::vsock {

// The host side of virtio-vsock (Firecracker's vsock/unix/muxer.rs): the listening Unix socket at
// `uds_path`, host programs writing their "CONNECT <port>\n" line, the connection table, and the
// host sockets behind it. The device (devices/virtio/vsock.cpp) owns the virtqueues: it hands each
// well-formed packet from the guest to send(), and asks receive() for the next packet the host side
// owes the guest while it has a receive chain at hand. The protocol on uds_path (CONNECT lines,
// "<uds_path>_P" for guest-initiated connections), flow control, teardown and limits are described
// with VirtioVsock (devices/virtio/vsock.hpp).
//
// Threading: like the device, the muxer belongs to the event loop's thread: every call and every fd
// handler it registers on `loop` runs there, so it takes no lock. When a host event leaves packets
// for the guest, a handler calls `guest_work` so that the device fills receive chains.
class Muxer {
 public:
  static constexpr size_t kMaxConnections = 256;
  static constexpr size_t kMaxPendingClients = 32;
  // "CONNECT 4294967295\n" is 19 bytes.
  static constexpr size_t kMaxConnectLine = 32;
  static constexpr uint32_t kFirstHostPort = uint32_t{1} << 30;

  struct Counters {
    uint64_t credit_overruns = 0;  // connections reset because the guest sent beyond its credit
    uint64_t rsts_dropped = 0;     // RSTs not sent: too many waiting for receive buffers
  };

  // Binds and listens on `uds_path` (see listen_unix for what is refused) and watches it on
  // `loop`; unlinked in the destructor. `guest_cid` addresses the packets built for the guest;
  // `name` is for logs.
  Muxer(EventLoop& loop, uint64_t guest_cid, std::string uds_path, std::string name,
        std::function<void()> guest_work);
  Muxer(const Muxer&) = delete;
  Muxer& operator=(const Muxer&) = delete;
  // Closes every socket, leaves the loop, unlinks uds_path.
  ~Muxer();

  // The device was activated: host programs are accepted from now on (refused before).
  void activate() { active_ = true; }
  // The device is reset: every connection and pending client leaves the loop and is closed (the
  // peers see EOF), every packet owed to the guest forgotten.
  void reset();

  // Guest to host: a packet the parser accepted (its payload is read from `chain` after the
  // header).
  void send(const Header& header, const DescriptorChain& chain);
  // Answers a well-addressed packet we refuse (a bad type, an unknown op) with an RST.
  void refuse(const Header& header) { queue_rst(header.dst_port, header.src_port, header.type); }

  // Host to guest: whether receive() may have a packet.
  bool has_receive_work() const { return !rsts_.empty() || !rx_ready_.empty(); }
  // Writes the next packet owed to the guest into `chain`, whose writable part holds more than a
  // header: its size, or 0 if this turn produced none (the chain stays unused).
  uint32_t receive(const DescriptorChain& chain);

  size_t connection_count() const { return connections_.size(); }
  Counters counters() const { return counters_; }

 private:
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
    explicit Entry(Connection c) : conn(std::move(c)) {}
    Connection conn;
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
  void connect_to_host(const Header& header);

  // Writes the next packet `entry` owes the guest into `chain`: its size, or 0 if none.
  uint32_t fill_rx(Entry& entry, const DescriptorChain& chain);
  uint32_t write_packet(const DescriptorChain& chain, Header header,
                        std::span<const uint8_t> payload);
  Header header_for(uint32_t host_port, uint32_t guest_port, uint16_t op) const;

  // After any change to a connection: ends it if both directions are done, else updates what the
  // loop watches and schedules it for receive. `key` may be gone afterwards.
  void settle(Key key);
  bool wants_rx(const Entry& entry) const;
  bool flush(Entry& entry);  // false: the socket broke (the caller resets the connection)
  void close(Key key, bool send_rst);
  void queue_rst(uint32_t host_port, uint32_t guest_port, uint16_t type);
  void pause_listener();
  void resume_listener();

  EventLoop& loop_;
  const uint64_t guest_cid_;
  const std::string uds_path_;
  const std::string name_;
  const std::function<void()> guest_work_;
  UniqueFd listener_;

  bool active_ = false;
  bool listener_paused_ = false;  // accept() failed for want of fds
  std::unordered_map<Key, std::unique_ptr<Entry>> connections_;
  std::unordered_map<int, Client> clients_;
  std::deque<Key> rx_ready_;  // connections with something for the guest, round robin
  std::deque<Rst> rsts_;      // RSTs to connections that are gone
  std::vector<uint8_t> staging_;
  uint32_t next_host_port_ = kFirstHostPort;
  Counters counters_;
  bool warned_credit_ = false;
  bool warned_accept_ = false;
};

}  // namespace vmm::devices::virtio::vsock
