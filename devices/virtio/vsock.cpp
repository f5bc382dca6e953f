#include "devices/virtio/vsock.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

using vsock::Header;
using vsock::kHeaderSize;
using vsock::Verdict;

namespace {

// 0-2 are the hypervisor, the loopback and the host; -1U is VMADDR_CID_ANY; the upper 32 bits
// are reserved (virtio 1.2, 5.10.4).
uint64_t checked_cid(uint64_t cid) {
  if (cid < 3 || cid >= UINT32_MAX)
    fail("guest cid {}: not a guest's (3 to {})", cid, UINT32_MAX - 1);
  return cid;
}

}  // namespace

VirtioVsock::VirtioVsock(EventLoop& loop, uint64_t guest_cid, std::string uds_path,
                         std::string name)
    : loop_(loop),
      guest_cid_(checked_cid(guest_cid)),
      name_(std::move(name)),
      muxer_(loop, guest_cid_, std::move(uds_path), name_, [this] {
        // A host event left packets for the guest.
        if (!active()) return;
        process_rx();
        notify_driver();
      }) {}

// muxer_ goes first, closing the sockets, taking the listener out of the loop and unlinking
// uds_path; then watched_ leaves the loop.
VirtioVsock::~VirtioVsock() = default;

uint64_t VirtioVsock::features() const {
  return kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc;
}

void VirtioVsock::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_vsock_config (virtio 1.2, 5.10.4): le64 guest_cid.
  const uint64_t config = guest_cid_;
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof(config)) return;
  const size_t bytes = std::min<uint64_t>(data.size(), sizeof(config) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config) + offset, bytes);
}

void VirtioVsock::activate(const Activation& activation) {
  rx_queue_ = activation.queues.at(0);
  tx_queue_ = activation.queues.at(1);
  event_queue_ = activation.queues.at(2);
  interrupt_ = activation.interrupt;
  muxer_.activate();
  watch(activation.notify_fds);
}

void VirtioVsock::watch(const std::vector<int>& notify_fds) {
  watched_.clear();
  watched_.add_notify_fds(notify_fds, [this](uint16_t queue) { notify(queue); });
  watched_.add(resume_.fd(), EPOLLIN, [this](uint32_t) { on_resume(); });
}

void VirtioVsock::reset(ResetDone done) {
  watched_.clear();
  resume_.consume();
  muxer_.reset();  // the peers see EOF now
  if (rx_chain_) std::move(*rx_chain_).discard();
  rx_chain_.reset();
  rx_queue_ = nullptr;
  tx_queue_ = nullptr;
  event_queue_ = nullptr;
  interrupt_ = nullptr;
  rx_failed_ = false;
  tx_failed_ = false;
  event_failed_ = false;
  transport_reset_pending_ = false;
  rx_out_of_buffers_ = false;
  // Every write into guest memory happens inside a handler: none is left to wait for.
  done();
}

VsockCounters VirtioVsock::counters() const {
  VsockCounters counters = counters_;
  const vsock::Muxer::Counters host = muxer_.counters();
  counters.credit_overruns = host.credit_overruns;
  counters.rsts_dropped = host.rsts_dropped;
  return counters;
}

void VirtioVsock::notify(uint16_t index) {
  if (!active()) return;
  if (index == 0) {
    rx_out_of_buffers_ = false;  // the driver added receive buffers
  } else if (index == 1) {
    process_tx();
  } else if (index == 2) {
    send_events();
  }
  process_rx();
  notify_driver();
}

void VirtioVsock::on_resume() {
  resume_.consume();
  if (!active()) return;
  process_tx();
  send_events();
  process_rx();
  notify_driver();
}

void VirtioVsock::save_state(StateWriter& out) const {
  SplitQueue::save_chains(out, held(rx_chain_));
  // None held: the restore checks that these queues have no chain in use either.
  SplitQueue::save_chains(out, {});
  SplitQueue::save_chains(out, {});
}

void VirtioVsock::restore_state(StateReader& in) {
  // A queue broken before the snapshot was reported then.
  rx_failed_ = rx_queue_->broken();
  tx_failed_ = tx_queue_->broken();
  event_failed_ = event_queue_->broken();
  std::vector<DescriptorChain> rx = rx_queue_->restore_chains(in, 1);
  if (!rx.empty()) rx_chain_ = std::move(rx.front());
  tx_queue_->restore_chains(in, 0);
  event_queue_->restore_chains(in, 0);
  check_broken(rx_queue_, rx_failed_, "receive");
  check_broken(tx_queue_, tx_failed_, "transmit");
  check_broken(event_queue_, event_failed_, "event");
  // The connections stayed with the old process: the driver drops its own.
  transport_reset_pending_ = true;
  send_events();
  notify_driver();
}

void VirtioVsock::notify_driver() {
  // Every call, so that each queue's event index moves on.
  const bool rx = rx_queue_->needs_notification();
  const bool tx = tx_queue_->needs_notification();
  const bool event = event_queue_->needs_notification();
  if (rx || tx || event) interrupt_->signal_used();
}

void VirtioVsock::check_broken(SplitQueue* queue, bool& failed, const char* what) {
  if (failed || !queue->broken()) return;
  failed = true;
  metrics_.count_error();
  spdlog::error("virtio-vsock {}: {} queue: {}; the device needs a reset", name_, what,
                queue->broken_reason());
  interrupt_->signal_needs_reset();
}

// ---- Transmit: packets from the guest ----

void VirtioVsock::process_tx() {
  if (tx_failed_ || !tx_queue_->ready()) return;
  // One queue's worth per wake-up: a driver can keep the ring full for ever.
  for (uint32_t budget = tx_queue_->config().size; budget > 0; --budget) {
    auto chain = tx_queue_->pop();
    if (!chain) {
      check_broken(tx_queue_, tx_failed_, "transmit");
      return;
    }
    handle_tx(*chain);
    tx_queue_->add_used(std::move(*chain), 0);
  }
  resume_.signal();
}

void VirtioVsock::handle_tx(const DescriptorChain& chain) {
  uint8_t head[kHeaderSize];
  const size_t got = chain.read(0, head);
  const auto packet = vsock::parse_tx_packet(std::span<const uint8_t>(head, got),
                                             chain.readable_bytes(), guest_cid_);
  const Header& header = packet.header;
  if (packet.verdict == Verdict::kAccept) {
    ++counters_.tx_packets;
    metrics_.count_request(header.len);  // checked against the chain by parse_tx_packet
    muxer_.send(header, chain);
    return;
  }
  const vsock::VerdictPolicy policy = vsock::verdict_policy(packet.verdict);
  if (policy.answer_with_rst && header.op != vsock::kOpRst) muxer_.refuse(header);
  drop_tx(chain, packet.verdict, policy.level);
}

void VirtioVsock::drop_tx(const DescriptorChain& chain, Verdict verdict,
                          spdlog::level::level_enum level) {
  ++counters_.tx_dropped;
  metrics_.count_error();
  const auto kind = static_cast<size_t>(verdict);
  ++counters_.tx_dropped_by[kind];
  const bool first = !reported_.test(kind);
  reported_.set(kind);
  spdlog::log(first ? level : spdlog::level::debug,
              "virtio-vsock {}: dropped transmit chain {} ({} readable bytes): {}{}", name_,
              chain.head(), chain.readable_bytes(), vsock::to_string(verdict),
              first ? "; further ones are counted, logged at debug level" : "");
}

// ---- Events ----

void VirtioVsock::send_events() {
  if (!transport_reset_pending_ || event_failed_ || !event_queue_->ready()) return;
  // A chain too small for the event is returned empty: at most a queue's worth per wake-up.
  for (uint32_t budget = event_queue_->config().size; budget > 0; --budget) {
    auto chain = event_queue_->pop();
    if (!chain) {
      check_broken(event_queue_, event_failed_, "event");
      return;
    }
    if (chain->writable_bytes() < vsock::kEventSize) {
      spdlog::debug("virtio-vsock {}: event chain {} has {} writable bytes; returned empty", name_,
                    chain->head(), chain->writable_bytes());
      event_queue_->add_used(std::move(*chain), 0);
      continue;
    }
    const uint32_t event = vsock::kEventTransportReset;
    chain->write(0, {reinterpret_cast<const uint8_t*>(&event), sizeof(event)});
    // Linux handles an event whose used length is exactly the event's size.
    event_queue_->add_used(std::move(*chain), vsock::kEventSize);
    transport_reset_pending_ = false;
    return;
  }
  resume_.signal();
}

// ---- Receive: packets for the guest ----

std::optional<DescriptorChain> VirtioVsock::pop_rx_chain() {
  while (true) {
    auto chain = rx_queue_->pop();
    if (!chain) {
      check_broken(rx_queue_, rx_failed_, "receive");
      return std::nullopt;
    }
    // A header and at least one byte of data: a chain that can carry only control packets
    // would stall a connection that has data.
    if (chain->writable_bytes() > kHeaderSize) return chain;
    ++counters_.rx_bad_buffers;
    metrics_.count_error();
    if (!std::exchange(warned_rx_buffer_, true)) {
      spdlog::warn(
          "virtio-vsock {}: receive chain {} has {} writable bytes, no room for a header and data; "
          "returned empty (further ones are counted, not logged)",
          name_, chain->head(), chain->writable_bytes());
    }
    rx_queue_->add_used(std::move(*chain), 0);
    // A driver that keeps offering such chains would keep us here: come back in a later round.
    if (--rx_skip_budget_ == 0) {
      resume_.signal();
      return std::nullopt;
    }
  }
}

void VirtioVsock::process_rx() {
  if (rx_failed_ || !rx_queue_->ready()) return;
  rx_skip_budget_ = rx_queue_->config().size;
  for (int budget = kRxBudget;; --budget) {
    if (!muxer_.has_receive_work()) return;
    if (budget == 0) {
      resume_.signal();  // more to send: after the other fds had their turn
      return;
    }
    if (!rx_chain_) {
      if (rx_out_of_buffers_) return;
      rx_chain_ = pop_rx_chain();
      if (!rx_chain_) {
        // Readable sockets are not watched meanwhile: nothing spins until the driver notifies
        // (or, when pop_rx_chain() stopped at its budget, the resume eventfd brings us back).
        rx_out_of_buffers_ = rx_skip_budget_ != 0;
        return;
      }
    }
    const uint32_t bytes = muxer_.receive(*rx_chain_);
    if (bytes != 0) {
      rx_queue_->add_used(std::move(*rx_chain_), bytes);
      rx_chain_.reset();
      ++counters_.rx_packets;
      metrics_.count_request(bytes - kHeaderSize);  // receive() writes a header, then the data
    }
  }
}

}  // namespace vmm::devices::virtio
