#include "devices/virtio/net.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <exception>
#include <utility>

namespace vmm::devices::virtio {

NetErrorPolicy net_error_policy(NetError error) {
  using enum NetError;
  switch (error) {
    case kTxDeviceWritable:
    case kTxShortHeader:
    case kTxTooLong:
    case kTxTooManyDescriptors:
    case kTxBufferOutsideMemory:
    case kTxBackendFailed: return {&NetCounters::tx_dropped, spdlog::level::warn};
    case kRxChainTooSmall: return {&NetCounters::rx_bad_buffers, spdlog::level::warn};
    case kRxShortPacket:
    case kRxTruncated:
    case kRxOffloadsRefused:
    case kRxDoesNotFit: break;
  }
  return {&NetCounters::rx_dropped, spdlog::level::warn};
}

const char* net_error_name(NetError error) {
  using enum NetError;
  switch (error) {
    case kTxDeviceWritable: return "transmit chain with device-writable descriptors";
    case kTxShortHeader: return "transmit chain shorter than a header";
    case kTxTooLong: return "transmit chain longer than the largest packet";
    case kTxTooManyDescriptors: return "transmit chain with more descriptors than one writev takes";
    case kTxBufferOutsideMemory: return "transmit buffer outside guest memory";
    case kTxBackendFailed: return "the backend refused a packet";
    case kRxShortPacket: return "received packet shorter than a header";
    case kRxTruncated: return "received packet too long, maybe truncated";
    case kRxOffloadsRefused: return "received packet with offloads the driver did not accept";
    case kRxDoesNotFit: return "received packet larger than the receive buffers";
    case kRxChainTooSmall: return "receive chain too small for a header, returned empty";
  }
  return "unknown";
}

VirtioNet::VirtioNet(const GuestMemory& memory, EventLoop& loop,
                     std::unique_ptr<PacketBackend> backend, std::array<uint8_t, 6> mac,
                     std::string name, const NetRateLimits& limits)
    : memory_(memory),
      loop_(loop),
      backend_(std::move(backend)),
      name_(std::move(name)),
      staging_(kStagingBytes),
      rx_throttle_(limits.rx, metrics_),
      tx_throttle_(limits.tx, metrics_) {
  std::copy(mac.begin(), mac.end(), config_.mac);
  config_.status = kNetStatusLinkUp;
}

VirtioNet::~VirtioNet() {
  unwatch();
}

uint64_t VirtioNet::features() const {
  return kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc | kNetFeatureMac |
         kNetFeatureStatus | kNetFeatureMrgRxbuf | kNetFeatureCsum | kNetFeatureGuestCsum |
         kNetFeatureGuestTso4 | kNetFeatureGuestTso6 | kNetFeatureGuestEcn | kNetFeatureGuestUfo |
         kNetFeatureHostTso4 | kNetFeatureHostTso6 | kNetFeatureHostEcn | kNetFeatureHostUfo;
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof(config_)) return;
  VirtioNetConfig config = config_;
  if (link_down_until_read_.load()) {
    config.status = 0;
    constexpr uint64_t kStatusOffset = offsetof(VirtioNetConfig, status);
    const bool reads_status =
        offset < kStatusOffset + sizeof(config.status) && offset + data.size() > kStatusOffset;
    // The driver has seen the link down: it is up again, and the driver is told.
    if (reads_status && link_down_until_read_.exchange(false)) {
      link_interrupt_->signal_config_change();
    }
  }
  const size_t bytes = std::min<uint64_t>(data.size(), sizeof(config) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config) + offset, bytes);
}

void VirtioNet::activate(const Activation& activation) {
  rx_queue_ = activation.queues.at(0);
  tx_queue_ = activation.queues.at(1);
  interrupt_ = activation.interrupt;
  driver_features_ = activation.driver_features;
  watch(activation.notify_fds);
  try {
    backend_->set_offload(tun_offload_flags(driver_features_));
  } catch (const std::exception& e) {
    // The backend could hand the driver packets it did not agree to: nothing moves until a reset.
    spdlog::warn("virtio-net {}: {}; the device needs a reset", name_, e.what());
    failed_ = true;
    interrupt_->signal_needs_reset();
  }
  update_interest();
}

void VirtioNet::watch(const std::vector<int>& notify_fds) {
  unwatch();
  watched_.add_notify_fds(notify_fds, [this](uint16_t queue) { notify(queue); });
  watched_.add(resume_.fd(), EPOLLIN, [this](uint32_t) { on_resume(); });
  rx_throttle_.watch(watched_, [this] { on_resume(); });
  tx_throttle_.watch(watched_, [this] { on_resume(); });
  if (!backend_hung_up_) {
    loop_.add(backend_->fd(), 0, [this](uint32_t events) { on_events(events); });
    backend_watched_ = true;
    events_ = 0;
  }
}

void VirtioNet::unwatch() {
  watched_.clear();
  if (backend_watched_) loop_.remove(backend_->fd());
  backend_watched_ = false;
}

void VirtioNet::reset(ResetDone done) {
  unwatch();
  resume_.consume();
  // The driver no longer expects the chains back.
  for (DescriptorChain& chain : rx_chains_) std::move(chain).discard();
  rx_chains_.clear();
  if (tx_waiting_) std::move(*tx_waiting_).discard();
  tx_waiting_.reset();
  rx_throttle_.cancel();
  tx_throttle_.cancel();
  if (staged_ != 0) ++counters_.rx_dropped;
  staged_ = 0;
  rx_queue_ = nullptr;
  tx_queue_ = nullptr;
  interrupt_ = nullptr;
  driver_features_ = 0;
  failed_ = false;
  rx_failed_ = false;
  tx_failed_ = false;
  rx_out_of_buffers_ = false;
  link_down_until_read_.store(false);  // the next driver reads the status at its probe
  try {
    backend_->set_offload(0);
  } catch (const std::exception& e) {
    spdlog::warn("virtio-net {}: {}", name_, e.what());
  }
  // Every write into guest memory happens inside a handler: none is left to wait for.
  done();
}

void VirtioNet::save_state(StateWriter& out) const {
  SplitQueue::save_chains(out, rx_chains_);
  SplitQueue::save_chains(out, held(tx_waiting_));
  out.put_bytes({staging_.data(), staged_});
}

void VirtioNet::restore_state(StateReader& in) {
  // A queue broken before the snapshot was reported then.
  rx_failed_ = rx_queue_->broken();
  tx_failed_ = tx_queue_->broken();
  rx_chains_ = rx_queue_->restore_chains(in, kQueueSize);
  std::vector<DescriptorChain> tx = tx_queue_->restore_chains(in, 1);
  if (!tx.empty()) tx_waiting_ = std::move(tx.front());
  // A full staging buffer is a truncated packet, never kept.
  const std::vector<uint8_t> staged = in.get_bytes(kStagingBytes - 1);
  if (!staged.empty() && staged.size() < kNetHdrSize) {
    in.corrupt(
        fmt::format("the staged packet of {} bytes is shorter than a header", staged.size()));
  }
  std::copy(staged.begin(), staged.end(), staging_.begin());
  staged_ = staged.size();
  check_broken(rx_queue_, rx_failed_, "receive");
  check_broken(tx_queue_, tx_failed_, "transmit");
  update_interest();
  if ((driver_features_ & kNetFeatureStatus) != 0) {
    // A new backend (a clone's tap): the driver sees the link go down and up (above).
    link_interrupt_ = interrupt_;
    link_down_until_read_.store(true);
    interrupt_->signal_config_change();
  }
}

std::string VirtioNet::debug_state() const {
  return fmt::format(
      "watching {}{}; rx: {} packets, {} dropped, {} bad buffers, {} staged bytes, {} chains held, "
      "{}; tx: {} packets, {} dropped, {}",
      (events_ & EPOLLIN) != 0 ? "in" : "", (events_ & EPOLLOUT) != 0 ? " out" : "",
      counters_.rx_packets, counters_.rx_dropped, counters_.rx_bad_buffers, staged_,
      rx_chains_.size(), rx_out_of_buffers_ ? "waiting for buffers" : "not waiting",
      counters_.tx_packets, counters_.tx_dropped,
      !tx_waiting_             ? "nothing waiting"
      : tx_throttle_.waiting() ? "a chain waits for the rate limit"
                               : "a chain waits for the backend");
}

void VirtioNet::set_rate_limits(const NetRateLimits& limits) {
  rx_throttle_.set(limits.rx);
  tx_throttle_.set(limits.tx);
}

void VirtioNet::notify(uint16_t index) {
  if (rx_queue_ == nullptr || failed_) return;
  if (index == 0) {
    rx_out_of_buffers_ = false;  // the driver added receive buffers
    process_rx();
  } else if (index == 1) {
    process_tx();
  }
  update_interest();
  notify_driver();
}

void VirtioNet::on_resume() {
  resume_.consume();
  if (rx_queue_ == nullptr || failed_) return;
  process_tx();
  process_rx();
  update_interest();
  notify_driver();
}

void VirtioNet::on_events(uint32_t events) {
  if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
    // Reported whatever we watch: leave the loop, or it would spin.
    spdlog::error("virtio-net {}: the backend {} hung up; the link is dead", name_,
                  backend_->name());
    loop_.remove(backend_->fd());
    backend_watched_ = false;
    backend_hung_up_ = true;
    return;
  }
  if (rx_queue_ == nullptr || failed_) return;  // an event from before a reset
  if ((events & EPOLLOUT) != 0) process_tx();
  if ((events & EPOLLIN) != 0) process_rx();
  update_interest();
  notify_driver();
}

void VirtioNet::update_interest() {
  if (!backend_watched_) return;
  uint32_t wanted = 0;
  if (rx_queue_ != nullptr && !failed_) {
    // A side waiting for its rate limit watches nothing: its timer brings it back.
    if (!rx_failed_ && !rx_out_of_buffers_ && !rx_throttle_.waiting()) wanted |= EPOLLIN;
    if (!tx_failed_ && tx_waiting_ && !tx_throttle_.waiting()) wanted |= EPOLLOUT;
  }
  if (wanted == events_) return;
  loop_.modify(backend_->fd(), wanted);
  events_ = wanted;
}

void VirtioNet::notify_driver() {
  // Both calls, so that each queue's event index moves on.
  const bool rx = rx_queue_->needs_notification();
  const bool tx = tx_queue_->needs_notification();
  if (rx || tx) interrupt_->signal_used();
}

void VirtioNet::check_broken(SplitQueue* queue, bool& failed, const char* what) {
  if (failed || !queue->broken()) return;
  failed = true;
  metrics_.count_error();
  spdlog::error("virtio-net {}: {} queue: {}; the device needs a reset", name_, what,
                queue->broken_reason());
  interrupt_->signal_needs_reset();
}

void VirtioNet::process_rx() {
  if (rx_failed_ || !rx_queue_->ready() || rx_throttle_.waiting()) return;
  rx_yielded_ = false;
  rx_skip_budget_ = rx_queue_->config().size;
  for (int budget = kRxBudget; budget > 0; --budget) {
    if (staged_ == 0) {
      // A chain first: without one the packet is better left queued in the backend.
      if (rx_chains_.empty()) {
        auto chain = pop_rx_chain();
        if (!chain) {
          rx_out_of_buffers_ = !rx_yielded_;
          return;
        }
        rx_chains_.push_back(std::move(*chain));
      }
      if (!read_packet()) return;
      if (staged_ == 0) continue;  // dropped
    }
    // Over the limit, the packet waits in staging_ (the timer resumes us).
    const uint64_t frame = staged_ - kNetHdrSize;
    if (!rx_throttle_.allows(frame)) return;
    if (!deliver_packet()) {
      rx_out_of_buffers_ = !rx_yielded_;
      return;
    }
    rx_throttle_.take(frame);
  }
}

std::optional<DescriptorChain> VirtioNet::pop_rx_chain() {
  while (true) {
    auto chain = rx_queue_->pop();
    if (!chain) {
      check_broken(rx_queue_, rx_failed_, "receive");
      return std::nullopt;
    }
    if (chain->writable_bytes() >= kNetHdrSize) return chain;
    // The driver must give at least a header's room (virtio 1.2, 5.1.6.3.1). Returned at once:
    // the used entries of the packet being assembled are added later, so they stay together.
    report(NetError::kRxChainTooSmall, chain->head(),
           fmt::format("{} writable bytes", chain->writable_bytes()));
    rx_queue_->add_used(std::move(*chain), 0);
    // A driver that keeps offering such chains would keep us here: come back in a later round.
    if (--rx_skip_budget_ == 0) {
      rx_yielded_ = true;
      resume_.signal();
      return std::nullopt;
    }
  }
}

bool VirtioNet::read_packet() {
  ssize_t n;
  do {
    n = ::read(backend_->fd(), staging_.data(), staging_.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && !std::exchange(warned_rx_error_, true)) {
      spdlog::warn("virtio-net {}: reading from {}: {}", name_, backend_->name(),
                   std::strerror(errno));
    }
    return false;
  }
  staged_ = static_cast<size_t>(n);
  if (staged_ < kNetHdrSize) {
    drop_rx(NetError::kRxShortPacket, {});
  } else if (staged_ == staging_.size()) {
    drop_rx(NetError::kRxTruncated, fmt::format("over {} bytes", staging_.size() - 1));
  }
  return true;
}

void VirtioNet::drop_rx(NetError error, const std::string& detail) {
  report(error, 0, fmt::format("{} bytes{}{}", staged_, detail.empty() ? "" : ", ", detail));
  staged_ = 0;
}

void VirtioNet::report(NetError error, uint16_t head, const std::string& detail) {
  const NetErrorPolicy policy = net_error_policy(error);
  ++(counters_.*policy.counter);
  metrics_.count_error();
  const auto kind = static_cast<size_t>(error);
  ++counters_.errors[kind];
  const bool first = !reported_.test(kind);
  reported_.set(kind);
  spdlog::log(first ? policy.level : spdlog::level::debug, "virtio-net {}: {} (chain {}{}{}){}",
              name_, net_error_name(error), head, detail.empty() ? "" : ", ", detail,
              first ? "; further ones are counted, logged at debug level" : "");
}

bool VirtioNet::deliver_packet() {
  VirtioNetHdr header;
  std::memcpy(&header, staging_.data(), sizeof(header));
  if (!fit_rx_header(header, driver_features_)) {
    drop_rx(NetError::kRxOffloadsRefused,
            fmt::format("flags {:#x}, gso type {:#x}", header.flags, header.gso_type));
    return true;
  }

  // How many chains the packet needs, from those held and then the ring. Without MRG_RXBUF it
  // must fit one; with it, a packet needing more chains than the ring holds never fits. A chain
  // too small is kept for the next packet.
  const bool mergeable = (driver_features_ & kNetFeatureMrgRxbuf) != 0;
  const size_t max_chains = mergeable ? rx_queue_->config().size : 1;
  size_t needed = 0;
  uint64_t capacity = 0;
  while (capacity < staged_) {
    if (needed == max_chains) {
      drop_rx(NetError::kRxDoesNotFit,
              fmt::format("{} bytes of buffers{}", capacity, mergeable ? "" : ", no MRG_RXBUF"));
      return true;
    }
    if (needed == rx_chains_.size()) {
      auto chain = pop_rx_chain();
      if (!chain) return false;  // the packet waits in staging_ for more buffers
      rx_chains_.push_back(std::move(*chain));
    }
    capacity += rx_chains_[needed++].writable_bytes();
  }

  header.num_buffers = static_cast<uint16_t>(needed);
  std::memcpy(staging_.data(), &header, sizeof(header));
  size_t offset = 0;
  for (size_t i = 0; i < needed; ++i) {
    DescriptorChain& chain = rx_chains_[i];
    const size_t bytes = std::min<size_t>(chain.writable_bytes(), staged_ - offset);
    const size_t written =
        chain.write(0, std::span<const uint8_t>(staging_.data() + offset, bytes));
    rx_queue_->fill_used(std::move(chain), static_cast<uint32_t>(written));
    offset += bytes;
  }
  rx_queue_->publish_used();
  rx_chains_.erase(rx_chains_.begin(), rx_chains_.begin() + static_cast<ptrdiff_t>(needed));
  ++counters_.rx_packets;
  metrics_.count_request(staged_ - kNetHdrSize);  // the frame, without the virtio header
  staged_ = 0;
  return true;
}

void VirtioNet::process_tx() {
  if (tx_failed_ || !tx_queue_->ready() || tx_throttle_.waiting()) return;
  // A chain that would have blocked, or was over the limit, goes first: packets leave in order.
  if (tx_waiting_) {
    if (transmit(*tx_waiting_) != Sent::kDone) return;
    tx_waiting_.reset();
  }
  // One queue's worth per wake-up: a driver can keep the ring full for ever.
  for (uint32_t budget = tx_queue_->config().size; budget > 0; --budget) {
    auto chain = tx_queue_->pop();
    if (!chain) {
      check_broken(tx_queue_, tx_failed_, "transmit");
      return;
    }
    if (transmit(*chain) != Sent::kDone) {
      tx_waiting_ = std::move(*chain);
      return;
    }
  }
  resume_.signal();
}

VirtioNet::Sent VirtioNet::transmit(DescriptorChain& chain) {
  if (chain.writable_bytes() != 0) {
    drop_tx(std::move(chain), NetError::kTxDeviceWritable);
    return Sent::kDone;
  }
  if (chain.readable_bytes() < kNetHdrSize) {
    drop_tx(std::move(chain), NetError::kTxShortHeader,
            fmt::format("{} bytes", chain.readable_bytes()));
    return Sent::kDone;
  }
  if (chain.readable_bytes() > kNetMaxPacket) {
    drop_tx(std::move(chain), NetError::kTxTooLong,
            fmt::format("{} bytes", chain.readable_bytes()));
    return Sent::kDone;
  }
  if (chain.buffers().size() > IOV_MAX) {
    drop_tx(std::move(chain), NetError::kTxTooManyDescriptors,
            fmt::format("{} descriptors", chain.buffers().size()));
    return Sent::kDone;
  }
  const uint64_t frame = chain.readable_bytes() - kNetHdrSize;
  if (!tx_throttle_.allows(frame)) return Sent::kThrottled;
  tx_iov_.clear();
  for (const Buffer& buffer : chain) {
    // Inside guest memory: checked when the chain was popped.
    auto host = memory_.slice(buffer.addr, buffer.len);
    if (!host) {
      drop_tx(std::move(chain), NetError::kTxBufferOutsideMemory);
      return Sent::kDone;
    }
    tx_iov_.push_back({host->data(), host->size()});
  }
  ssize_t n;
  do {
    n = ::writev(backend_->fd(), tx_iov_.data(), static_cast<int>(tx_iov_.size()));
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Sent::kWouldBlock;
    drop_tx(std::move(chain), NetError::kTxBackendFailed,
            fmt::format("{}: {}", backend_->name(), std::strerror(errno)));
    return Sent::kDone;
  }
  tx_throttle_.take(frame);
  ++counters_.tx_packets;
  metrics_.count_request(chain.readable_bytes() - kNetHdrSize);
  tx_queue_->add_used(std::move(chain), 0);
  return Sent::kDone;
}

void VirtioNet::drop_tx(DescriptorChain&& chain, NetError error, const std::string& detail) {
  report(error, chain.head(), detail);
  tx_queue_->add_used(std::move(chain), 0);
}

}  // namespace vmm::devices::virtio
