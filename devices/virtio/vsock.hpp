#pragma once

#include <array>
#include <bitset>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/vsock/muxer.hpp"
#include "devices/virtio/vsock/packet.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::virtio {

// What the device dropped and moved, for logs and tests.
struct VsockCounters {
  uint64_t rx_packets = 0;       // packets written into receive chains
  uint64_t rx_bad_buffers = 0;   // receive chains too small for a header and a byte, returned empty
  uint64_t tx_packets = 0;       // well-formed packets from the driver
  uint64_t tx_dropped = 0;       // malformed chains and headers (dropped, or answered with RST)
  uint64_t credit_overruns = 0;  // connections reset because the guest sent beyond its credit
  uint64_t rsts_dropped = 0;     // RSTs not sent: too many waiting for receive buffers
  std::array<uint64_t, vsock::kVerdictKinds> tx_dropped_by{};  // tx_dropped, by Verdict

  uint64_t dropped(vsock::Verdict verdict) const {
    return tx_dropped_by[static_cast<size_t>(verdict)];
  }
};

// A virtio-vsock device (virtio 1.2, 5.10), stream sockets only: the virtqueues and the packets
// on them. The host side, Firecracker's (a listening Unix socket at `uds_path`, the connections
// and their sockets), is vsock::Muxer (devices/virtio/vsock/muxer.hpp): the device parses each
// transmit chain and hands the well-formed packets to the muxer, and fills receive chains with
// the packets the muxer owes the guest.
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
// guest. A device reset closes every socket (the driver's own reset already drops its
// connections).
//
// Snapshot and restore: the host's connections stay with the old process; the restored device
// starts with none (its muxer is new) and sends the driver a VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on
// the event queue (virtio 1.2, 5.10.6.4; Firecracker does the same), on which Linux resets every
// connected socket (ECONNRESET) and reads the guest cid again (a clone's own). That event is the
// only one the device sends; it waits for an event buffer if the driver has given none. The
// receive chain the device held is saved by its head and read again.
//
// Limits: kMaxConnections connections, kMaxPendingClients host programs that have not yet
// written their CONNECT line; no timeouts (a guest that never answers a REQUEST, or a program
// that never writes its line, keeps its slot until it closes or the device resets).
//
// Threading: owned by the event loop thread (VirtioDevice), as is its muxer: no lock. From
// activation to reset it watches the queues' notify fds and a resume eventfd of its own. A
// notification moves at most one queue's worth of transmit chains (or kRxBudget receive packets,
// or one queue's worth of too-small receive chains) and signals the resume eventfd when it stopped
// early, so the loop serves everything else in between.
class VirtioVsock final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr size_t kMaxConnections = vsock::Muxer::kMaxConnections;
  static constexpr size_t kMaxPendingClients = vsock::Muxer::kMaxPendingClients;
  static constexpr size_t kMaxConnectLine = vsock::Muxer::kMaxConnectLine;
  static constexpr uint32_t kFirstHostPort = vsock::Muxer::kFirstHostPort;

  // Binds and listens on `uds_path` (a stale socket file is replaced; a live one or a non-socket
  // is refused with vmm::Error "PATH: in use" / "PATH: exists and is not a socket"); unlinked in
  // the destructor. Its fd is watched on `loop`. `guest_cid` must be 3 to 2^32 - 2 (vmm::Error
  // "guest cid N: ..."). `name` is for logs.
  VirtioVsock(EventLoop& loop, uint64_t guest_cid, std::string uds_path, std::string name);
  VirtioVsock(const VirtioVsock&) = delete;
  VirtioVsock& operator=(const VirtioVsock&) = delete;
  ~VirtioVsock() override;

  uint32_t device_id() const override { return kDeviceIdVsock; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override {
    return {kQueueSize, kQueueSize, kQueueSize};
  }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(const Activation& activation) override;
  void notify(uint16_t index) override;
  void reset(ResetDone done) override;
  void save_state(StateWriter& out) const override;
  void restore_state(StateReader& in) override;

  // On the owner thread.
  VsockCounters counters() const;
  size_t connection_count() const { return muxer_.connection_count(); }

 private:
  // Receive packets written per wakeup before yielding to the other fds (the resume eventfd
  // brings us back).
  static constexpr int kRxBudget = 256;

  // After a wake-up that stopped at its budget.
  void on_resume();
  // Watches the fds the device needs while active.
  void watch(const std::vector<int>& notify_fds);

  void process_tx();
  void handle_tx(const DescriptorChain& chain);
  void drop_tx(const DescriptorChain& chain, vsock::Verdict verdict,
               spdlog::level::level_enum level);

  void process_rx();
  std::optional<DescriptorChain> pop_rx_chain();

  // Writes the pending transport reset into an event chain, if the driver has given one.
  void send_events();

  void check_broken(SplitQueue* queue, bool& failed, const char* what);
  void notify_driver();
  bool active() const { return rx_queue_ != nullptr; }

  EventLoop& loop_;
  const uint64_t guest_cid_;
  const std::string name_;
  EventFd resume_;                  // a wake-up stopped at its budget: come back
  WatchedFds watched_{loop_};       // the notify fds and resume_, while active
  SplitQueue* rx_queue_ = nullptr;  // while active
  SplitQueue* tx_queue_ = nullptr;
  SplitQueue* event_queue_ = nullptr;
  DeviceInterrupt* interrupt_ = nullptr;
  bool rx_failed_ = false;
  bool tx_failed_ = false;
  bool event_failed_ = false;
  bool transport_reset_pending_ = false;  // restored: the driver is still to be told
  bool rx_out_of_buffers_ = false;        // until the driver notifies queue 0
  uint32_t rx_skip_budget_ = 0;           // too-small receive chains this wake-up may still return
  std::optional<DescriptorChain> rx_chain_;
  VsockCounters counters_;  // the device's own; the muxer counts credit_overruns and rsts_dropped
  std::bitset<vsock::kVerdictKinds> reported_;  // the verdicts logged at their level already
  bool warned_rx_buffer_ = false;
  // After the fields guest_work reaches: destroyed first.
  vsock::Muxer muxer_;
};

}  // namespace vmm::devices::virtio
