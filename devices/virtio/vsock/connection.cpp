#include "devices/virtio/vsock/connection.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

namespace vmm::devices::virtio::vsock {

namespace {

// The smallest ring: a few small packets fit without regrowing.
constexpr size_t kMinRing = 4 * 1024;
static_assert(std::has_single_bit(kBufAlloc), "the ring grows in powers of two up to kBufAlloc");

}  // namespace

Connection::Connection(UniqueFd socket, uint32_t host_port, uint32_t guest_port, State state)
    : socket_(std::move(socket)), host_port_(host_port), guest_port_(guest_port), state_(state) {}

void Connection::update_peer_credit(uint32_t buf_alloc, uint32_t fwd_cnt) {
  peer_buf_alloc_ = buf_alloc;
  peer_fwd_cnt_ = fwd_cnt;
}

uint32_t Connection::peer_credit() const {
  const uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;  // modulo 2^32, as the spec counts
  return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

void Connection::regrow(size_t capacity) {
  auto ring = std::make_unique_for_overwrite<uint8_t[]>(capacity);
  const size_t first = std::min(size_, capacity_ - head_);
  if (size_ != 0) {
    std::memcpy(ring.get(), ring_.get() + head_, first);
    std::memcpy(ring.get() + first, ring_.get(), size_ - first);
  }
  ring_ = std::move(ring);
  capacity_ = capacity;
  head_ = 0;
}

std::optional<Connection::Room> Connection::reserve(uint32_t len) {
  if (len > kBufAlloc - size_) return std::nullopt;
  // size_ + len <= kBufAlloc, a power of two, so the ring never grows past it.
  if (size_ + len > capacity_) regrow(std::max(kMinRing, std::bit_ceil(size_ + len)));
  const size_t tail = (head_ + size_) % capacity_;
  const size_t first = std::min<size_t>(len, capacity_ - tail);
  size_ += len;
  return Room{.first = {ring_.get() + tail, first}, .second = {ring_.get(), len - first}};
}

Connection::Flush Connection::flush() {
  while (size_ != 0) {
    const size_t contiguous = std::min(size_, capacity_ - head_);
    const ssize_t n =
        ::send(socket_.get(), ring_.get() + head_, contiguous, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Flush::kWouldBlock;
      return Flush::kBroken;
    }
    head_ = (head_ + static_cast<size_t>(n)) % capacity_;
    size_ -= static_cast<size_t>(n);
    fwd_cnt_ += static_cast<uint32_t>(n);
  }
  head_ = 0;  // an empty ring: the next packet starts contiguous
  return Flush::kDone;
}

void Connection::discard_buffered() {
  fwd_cnt_ += static_cast<uint32_t>(size_);
  size_ = 0;
  head_ = 0;
}

}  // namespace vmm::devices::virtio::vsock
