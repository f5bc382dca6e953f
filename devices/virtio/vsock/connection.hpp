#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "base/util/unique_fd.hpp"

namespace vmm::devices::virtio::vsock {

// The receive buffer we advertise per connection (buf_alloc): the most guest data we hold for a
// host socket that does not take it fast enough.
inline constexpr uint32_t kBufAlloc = 256 * 1024;

// One stream between a guest port and a host port, carried by a connected Unix socket: the
// virtio-vsock credit accounting (virtio 1.2, 5.10.6.3) both ways and the guest data waiting for
// the socket. It moves bytes and counts them; the device decides what to tell the guest.
//
// Guest to host: our buf_alloc is kBufAlloc and our fwd_cnt counts the bytes written to the
// socket, so a driver that honours its credit never has more than kBufAlloc bytes buffered here.
// Host to guest: we send at most the peer's credit, peer_buf_alloc - (tx_cnt - peer_fwd_cnt).
//
// The buffer is a ring whose capacity grows in powers of two with what is buffered and never
// past kBufAlloc, so a connection holds at most kBufAlloc bytes of memory whatever the pattern of
// guest writes and host reads.
class Connection {
 public:
  enum class State {
    kAwaitingResponse,  // host-initiated: REQUEST sent to the guest, waiting for RESPONSE
    kEstablished,
  };
  enum class Flush { kDone, kWouldBlock, kBroken };
  // Where reserved bytes go: the ring's free space may wrap, so it is up to two pieces.
  struct Room {
    std::span<uint8_t> first;
    std::span<uint8_t> second;
  };

  Connection(UniqueFd socket, uint32_t host_port, uint32_t guest_port, State state);

  int fd() const { return socket_.get(); }
  // Hands the socket over (to be closed elsewhere); the connection is dead afterwards.
  UniqueFd take_socket() { return std::move(socket_); }
  uint32_t host_port() const { return host_port_; }
  uint32_t guest_port() const { return guest_port_; }
  State state() const { return state_; }
  void set_established() { state_ = State::kEstablished; }

  // Host to guest. Every packet from the guest carries its buf_alloc and fwd_cnt.
  void update_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt);
  // Bytes the guest can take now; 0 if it reports more consumed than we sent (a hostile guest
  // gets no credit rather than unbounded credit).
  uint32_t peer_credit() const;
  void count_sent(uint32_t bytes) { tx_cnt_ += bytes; }

  // Guest to host. Room for `len` more bytes in the buffer, or nullopt if the guest sent beyond
  // the credit we gave it (nothing is reserved then). Fill both spans in order, then flush().
  std::optional<Room> reserve(uint32_t len);
  // Writes buffered bytes to the socket until it would block.
  Flush flush();
  // Forgets the buffered bytes (the socket cannot take them), counting them as forwarded.
  void discard_buffered();
  size_t buffered() const { return size_; }
  // Memory held for the buffer: at most kBufAlloc.
  size_t capacity() const { return capacity_; }

  // Our fwd_cnt, and whether enough of it is news to the guest that a CREDIT_UPDATE is worth
  // sending (half the buffer: the guest keeps streaming without an update per packet).
  uint32_t fwd_cnt() const { return fwd_cnt_; }
  bool credit_update_due() const { return fwd_cnt_ - reported_fwd_cnt_ >= kBufAlloc / 2; }
  // Every packet sent to the guest reports fwd_cnt().
  void reported_fwd_cnt() { reported_fwd_cnt_ = fwd_cnt_; }

 private:
  UniqueFd socket_;
  uint32_t host_port_;
  uint32_t guest_port_;
  State state_;
  uint32_t peer_buf_alloc_ = 0;
  uint32_t peer_fwd_cnt_ = 0;
  uint32_t tx_cnt_ = 0;  // bytes sent to the guest (wraps, like the guest's counters)
  uint32_t fwd_cnt_ = 0;
  uint32_t reported_fwd_cnt_ = 0;
  // Moves the buffered bytes into a ring of `capacity` bytes (a power of two), starting at 0.
  void regrow(size_t capacity);

  // Guest data not yet written: size_ bytes from head_, wrapping at capacity_.
  std::unique_ptr<uint8_t[]> ring_;
  size_t capacity_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace vmm::devices::virtio::vsock
