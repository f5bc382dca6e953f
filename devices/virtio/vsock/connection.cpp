#include "devices/virtio/vsock/connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

namespace vmm::devices::virtio::vsock {

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

std::optional<std::span<uint8_t>> Connection::reserve(uint32_t len) {
  if (len > kBufAlloc - buffered()) return std::nullopt;
  if (head_ != 0 && head_ == buffer_.size()) {
    buffer_.clear();
    head_ = 0;
  }
  const size_t start = buffer_.size();
  buffer_.resize(start + len);
  return std::span<uint8_t>(buffer_.data() + start, len);
}

Connection::Flush Connection::flush() {
  while (buffered() != 0) {
    const ssize_t n =
        ::send(socket_.get(), buffer_.data() + head_, buffered(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Flush::kBroken;
    }
    head_ += static_cast<size_t>(n);
    fwd_cnt_ += static_cast<uint32_t>(n);
  }
  if (buffered() != 0) {
    // Keep the buffer from creeping: the unsent tail moves to the front once it is the smaller
    // part.
    if (head_ >= buffer_.size() / 2) {
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<ptrdiff_t>(head_));
      head_ = 0;
    }
    return Flush::kWouldBlock;
  }
  buffer_.clear();
  head_ = 0;
  return Flush::kDone;
}

void Connection::discard_buffered() {
  fwd_cnt_ += static_cast<uint32_t>(buffered());
  buffer_.clear();
  head_ = 0;
}

}  // namespace vmm::devices::virtio::vsock
