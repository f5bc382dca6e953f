#pragma once

#include <sys/uio.h>

#include <spdlog/common.h>

#include <array>
#include <atomic>
#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/token_bucket.hpp"
#include "devices/backends/packet_backend.hpp"
#include "devices/virtio/net_header.hpp"
#include "devices/virtio/throttle.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::virtio {

inline constexpr uint16_t kNetStatusLinkUp = 1;

// struct virtio_net_config (virtio 1.2, 5.1.4) up to status; the fields after it belong to
// features we do not offer and read 0.
#pragma pack(push, 1)
struct VirtioNetConfig {
  uint8_t mac[6];
  uint16_t status;
};
#pragma pack(pop)
static_assert(sizeof(VirtioNetConfig) == 8);

// What the device dropped and moved, for logs and tests.
// Why the device dropped a packet or returned a chain unused: one kind per failure.
// net_error_policy() maps each, in one place, to the counter it adds to and the level the first
// of its kind is logged at (the rest are counted, and logged at debug: the guest or the network
// decides how many there are).
enum class NetError {
  kTxDeviceWritable,       // a transmit chain with device-writable descriptors
  kTxShortHeader,          // shorter than a virtio_net_hdr
  kTxTooLong,              // longer than kNetMaxPacket
  kTxTooManyDescriptors,   // more than one writev takes (IOV_MAX)
  kTxBufferOutsideMemory,  // a buffer outside guest memory
  kTxBackendFailed,        // the backend refused the write (not EAGAIN)
  kRxShortPacket,          // the backend handed us less than a header
  kRxTruncated,            // a packet that filled the staging buffer: maybe cut short
  kRxOffloadsRefused,      // offloads the driver did not accept
  kRxDoesNotFit,           // larger than the receive buffers the driver may give
  kRxChainTooSmall,        // a receive chain without room for a header: returned empty
};
inline constexpr size_t kNetErrorKinds = static_cast<size_t>(NetError::kRxChainTooSmall) + 1;

struct NetCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_dropped = 0;      // too big for the buffers, an offload the driver refused, malformed
  uint64_t rx_bad_buffers = 0;  // receive chains too small for a header, returned empty
  uint64_t tx_packets = 0;
  uint64_t tx_dropped = 0;                        // malformed chains, backend errors
  std::array<uint64_t, kNetErrorKinds> errors{};  // by NetError

  uint64_t of(NetError error) const { return errors[static_cast<size_t>(error)]; }
};

struct NetErrorPolicy {
  uint64_t NetCounters::*counter;  // rx_dropped, rx_bad_buffers or tx_dropped
  spdlog::level::level_enum level;
};
NetErrorPolicy net_error_policy(NetError error);

// A NIC's rate limits: frames (without the virtio header) the guest receives and transmits.
struct NetRateLimits {
  RateLimit rx{};
  RateLimit tx{};
  bool operator==(const NetRateLimits&) const = default;
};
const char* net_error_name(NetError error);

// A virtio-net device (virtio 1.2, 5.1) with one receive queue (0) and one transmit queue (1) on a
// PacketBackend (a tap). Packets cross with their virtio_net_hdr_v1 unchanged (the tap's vnet
// header is the same struct), except num_buffers and the receive flags the driver did not accept.
//
// Receive: when the backend's fd is readable, the device pops a receive chain first, then reads a
// packet into a staging buffer and copies it into the chain (with MRG_RXBUF, into as many chains
// as it needs; num_buffers says how many). When the driver has no buffers nothing is dropped and
// nothing spins: the fd is not watched for reading until the driver notifies queue 0, and the
// packet waits queued in the tap (or in the staging buffer, when the chains ran out mid-packet).
// A packet that does not fit a single chain without MRG_RXBUF is dropped, never truncated; the
// chain is kept for the next one. Packets are handled in batches, one interrupt per batch.
//
// Transmit: each chain's readable part (header + frame) is one writev. When the backend would
// block, that chain waits and the fd is watched for writing; later chains wait behind it.
//
// Rate limits (NetRateLimits, set_rate_limits()): a received packet over the rx budget waits in
// the staging buffer and the backend's fd is not watched for reading (more packets queue in the
// tap); a transmit chain over the tx budget waits as the next to go, in the guest's ring, and
// nothing more is popped. Each side's timer resumes it. Nothing is dropped for the limit.
//
// Reset: chains held for receive and the waiting transmit chain are discarded; a packet in the
// staging buffer is dropped too, because it was received under the old offloads and the next
// driver may negotiate fewer.
//
// Snapshot: the chains the device holds (receive chains popped for the next packet, a transmit
// chain waiting for the backend) are saved by their heads, a staged packet by its bytes; a restore
// reads the chains again and carries on with them, on its own backend (a clone's new tap). If the
// driver negotiated VIRTIO_NET_F_STATUS, the restored link reads down, announced by a
// configuration-change interrupt, until the driver has read the status once; then it reads up,
// announced by another. Linux's virtio_net acts on a config change only when the link bit changed
// (virtnet_config_changed_work), so it turns the carrier off, then on: its ARP entries go
// (neigh_carrier_down), IPv6 restarts DAD and router solicitation, and userspace (networkd,
// NetworkManager) sees the link go down and up and configures it again (a new DHCP lease). The
// MAC stays the one the driver read at probe: the config's MAC reaches it only at its next probe.
//
// Threading: owned by the event loop thread (VirtioDevice). From activation to reset it watches
// both queues' notify fds, the backend's fd and a resume eventfd of its own. Each wake-up moves at
// most a budget of packets and chains (kRxBudget received packets, one queue's worth of transmit
// chains or of too-small receive chains) and signals the resume eventfd when it stopped early, so
// the loop serves everything else in between. read_config() runs on vCPU threads: the driver's
// read of the status after a restore brings the link up and signals the change from there.
class VirtioNet final : public VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;

  // `backend`'s fd is watched on `loop` while the device is active. `name` is for logs ("eth0
  // (tap0)").
  VirtioNet(const GuestMemory& memory, EventLoop& loop, std::unique_ptr<PacketBackend> backend,
            std::array<uint8_t, 6> mac, std::string name, const NetRateLimits& limits = {});
  VirtioNet(const VirtioNet&) = delete;
  VirtioNet& operator=(const VirtioNet&) = delete;
  ~VirtioNet() override;

  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(const Activation& activation) override;
  void notify(uint16_t index) override;
  void reset(ResetDone done) override;
  void save_state(StateWriter& out) const override;
  void restore_state(StateReader& in) override;

  // On the owner thread.
  NetCounters counters() const { return counters_; }
  // A live change of the rate limits.
  void set_rate_limits(const NetRateLimits& limits);
  std::string debug_state() const override;

 private:
  // Reading the fd may return a packet up to this long; a read that fills the staging buffer
  // may have been truncated and is dropped.
  static constexpr size_t kStagingBytes = kNetMaxPacket + 1024;
  // Packets handled per wakeup before yielding to the other fds (level-triggered: we come back).
  static constexpr int kRxBudget = 256;

  void on_events(uint32_t events);
  // After a wake-up that stopped at its budget.
  void on_resume();
  void process_rx();
  // The next receive chain able to hold a header, or nullopt when the driver has none.
  std::optional<DescriptorChain> pop_rx_chain();
  // Reads one packet into the staging buffer: false when there is none (or the read failed).
  bool read_packet();
  // Copies the staged packet into receive chains: false if the driver ran out of them first.
  bool deliver_packet();
  // Counts and logs `error` (net_error_policy) for the staged packet, which is dropped.
  void drop_rx(NetError error, const std::string& detail);
  void process_tx();
  enum class Sent { kDone, kWouldBlock, kThrottled };
  Sent transmit(DescriptorChain& chain);
  void drop_tx(DescriptorChain&& chain, NetError error, const std::string& detail = {});
  void report(NetError error, uint16_t head, const std::string& detail);
  void check_broken(SplitQueue* queue, bool& failed, const char* what);
  void update_interest();
  void notify_driver();
  // Adds or removes the fds the device watches while active.
  void watch(const std::vector<int>& notify_fds);
  void unwatch();

  const GuestMemory& memory_;
  EventLoop& loop_;
  const std::unique_ptr<PacketBackend> backend_;
  const std::string name_;
  VirtioNetConfig config_{};  // the status in it is the link's when not bouncing (below)
  // After a restore: the link reads down until the driver reads the status, which brings it up
  // and signals the change through link_interrupt_ (set before, read after, this flag).
  mutable std::atomic<bool> link_down_until_read_{false};
  DeviceInterrupt* link_interrupt_ = nullptr;

  EventFd resume_;                  // a wake-up stopped at its budget: come back
  WatchedFds watched_{loop_};       // the notify fds and resume_, while active
  SplitQueue* rx_queue_ = nullptr;  // while active
  SplitQueue* tx_queue_ = nullptr;
  DeviceInterrupt* interrupt_ = nullptr;
  uint64_t driver_features_ = 0;
  bool failed_ = false;  // offloads refused: nothing moves until a reset
  bool rx_failed_ = false;
  bool tx_failed_ = false;
  bool rx_out_of_buffers_ = false;  // until the driver notifies queue 0
  bool rx_yielded_ = false;         // pop_rx_chain() stopped at its budget, not for want of chains
  uint32_t rx_skip_budget_ = 0;     // too-small receive chains this wake-up may still return
  bool backend_watched_ = false;    // with the loop; false when inactive or the backend hung up
  bool backend_hung_up_ = false;
  uint32_t events_ = 0;  // what the loop watches on the fd

  std::vector<uint8_t> staging_;
  size_t staged_ = 0;                       // bytes of the packet in staging_; 0: none
  std::vector<DescriptorChain> rx_chains_;  // popped for the staged or next packet
  std::optional<DescriptorChain> tx_waiting_;
  std::vector<iovec> tx_iov_;
  NetCounters counters_;
  Throttle rx_throttle_;
  Throttle tx_throttle_;
  std::bitset<kNetErrorKinds> reported_;  // the kinds logged at their level already
  bool warned_rx_error_ = false;
};

}  // namespace vmm::devices::virtio
