#include "devices/virtio/vsock/muxer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "base/util/parse_number.hpp"
#include "devices/virtio/vsock/unix_socket.hpp"

namespace vmm::devices::virtio::vsock {

namespace {

// Accepts per listener wakeup before yielding to the other fds (level-triggered: we come back).
constexpr int kAcceptBudget = 16;

// "CONNECT <port>" (without the newline): the port, or nullopt for anything else.
std::optional<uint32_t> parse_connect(const std::string& line) {
  static constexpr std::string_view kPrefix = "CONNECT ";
  if (line.size() <= kPrefix.size() || line.compare(0, kPrefix.size(), kPrefix) != 0) {
    return std::nullopt;
  }
  return parse_number<uint32_t>(std::string_view(line).substr(kPrefix.size()));
}

}  // namespace

Muxer::Muxer(EventLoop& loop, uint64_t guest_cid, std::string uds_path, std::string name,
             std::function<void()> guest_work)
    : loop_(loop),
      guest_cid_(guest_cid),
      uds_path_(std::move(uds_path)),
      name_(std::move(name)),
      guest_work_(std::move(guest_work)),
      listener_(listen_unix(uds_path_)),
      staging_(kMaxPayload) {
  try {
    loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_listener(); });
  } catch (...) {
    ::unlink(uds_path_.c_str());
    throw;
  }
}

Muxer::~Muxer() {
  reset();
  loop_.remove(listener_.get());
  ::unlink(uds_path_.c_str());
}

void Muxer::reset() {
  for (auto& [key, entry] : connections_) {
    if (entry->registered) loop_.remove(entry->conn.fd());
  }
  connections_.clear();  // closes the sockets
  for (auto& [fd, client] : clients_) loop_.remove(fd);
  clients_.clear();
  rx_ready_.clear();
  rsts_.clear();
  active_ = false;
  resume_listener();
}

uint32_t Muxer::receive(const DescriptorChain& chain) {
  if (!rsts_.empty()) {
    const Rst rst = rsts_.front();
    rsts_.pop_front();
    Header header = header_for(rst.host_port, rst.guest_port, kOpRst);
    header.type = rst.type;
    return write_packet(chain, header, {});
  }
  if (rx_ready_.empty()) return 0;
  const Key key = rx_ready_.front();
  rx_ready_.pop_front();
  auto it = connections_.find(key);
  if (it == connections_.end() || !it->second->queued) return 0;
  it->second->queued = false;
  const uint32_t bytes = fill_rx(*it->second, chain);
  settle(key);  // back in the queue's tail if it has more
  return bytes;
}

// ---- The listener and programs writing their CONNECT line ----

void Muxer::on_listener() {
  for (int budget = kAcceptBudget; budget > 0; --budget) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // Out of fds (or worse): the pending connection stays readable, so stop watching until a
      // connection closes rather than spin.
      if (!std::exchange(warned_accept_, true)) {
        spdlog::warn("virtio-vsock {}: accept on {}: {}", name_, uds_path_, std::strerror(errno));
      }
      pause_listener();
      return;
    }
    if (!active_ || clients_.size() >= kMaxPendingClients) {
      spdlog::debug("virtio-vsock {}: refused a host connection ({})", name_,
                    active_ ? "too many pending" : "no driver");
      continue;  // closed
    }
    const int raw = fd.get();
    loop_.add(raw, EPOLLIN, [this, raw](uint32_t) { on_client(raw); });
    clients_.emplace(raw, Client{std::move(fd), {}});
  }
}

void Muxer::pause_listener() {
  if (listener_paused_) return;
  loop_.modify(listener_.get(), 0);
  listener_paused_ = true;
}

void Muxer::resume_listener() {
  if (!listener_paused_) return;
  loop_.modify(listener_.get(), EPOLLIN);
  listener_paused_ = false;
}

void Muxer::on_client(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;  // closed earlier in this round
  Client& client = it->second;
  // One byte at a time: what follows the line is stream data for the guest, left in the socket.
  const char* dropped = nullptr;
  while (true) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // the rest comes later
    if (n <= 0) {
      dropped = "it hung up";
      break;
    }
    if (c == '\n') break;
    client.line.push_back(c);
    if (client.line.size() >= kMaxConnectLine) {
      dropped = "its line is too long";
      break;
    }
  }
  UniqueFd socket = std::move(client.fd);
  const std::string line = std::move(client.line);
  clients_.erase(it);
  loop_.remove(fd);
  resume_listener();
  if (dropped != nullptr) {
    spdlog::debug("virtio-vsock {}: dropped a host connection before its CONNECT: {}", name_,
                  dropped);
    return;
  }
  const auto port = parse_connect(line);
  if (!port || !active_ || connections_.size() >= kMaxConnections) {
    spdlog::debug("virtio-vsock {}: refused a host connection ({})", name_,
                  !port ? "not a CONNECT line" : "no room");
    return;
  }
  uint32_t host_port = next_host_port_;
  while (connections_.contains(key_of(host_port, *port))) {
    host_port = host_port == UINT32_MAX ? kFirstHostPort : host_port + 1;
  }
  next_host_port_ = host_port == UINT32_MAX ? kFirstHostPort : host_port + 1;

  const Key key = key_of(host_port, *port);
  auto entry = std::make_unique<Entry>(
      Connection(std::move(socket), host_port, *port, Connection::State::kAwaitingResponse));
  entry->pending = kSendRequest;
  // Not read until the guest accepts; a hang-up is still reported.
  loop_.add(fd, 0, [this, key, fd](uint32_t events) { on_socket(key, fd, events); });
  connections_.emplace(key, std::move(entry));
  spdlog::debug("virtio-vsock {}: host connection to guest port {} as host port {}", name_, *port,
                host_port);
  settle(key);
  guest_work_();
}

// ---- Connections: socket events and their bookkeeping ----

void Muxer::on_socket(Key key, int fd, uint32_t events) {
  auto it = connections_.find(key);
  if (it == connections_.end() || it->second->conn.fd() != fd) return;  // an older socket's
  Entry& entry = *it->second;
  if ((events & (EPOLLHUP | EPOLLERR)) != 0) {
    // Reported whatever we watch: leave the loop and drain what the socket still holds.
    loop_.remove(fd);
    entry.registered = false;
    entry.hung_up = true;
    entry.host_write_closed = true;
    entry.readable = true;
    entry.conn.discard_buffered();
    if (entry.conn.state() == Connection::State::kAwaitingResponse) {
      close(key, true);
      return;
    }
  } else {
    if ((events & EPOLLIN) != 0) entry.readable = true;
    if ((events & EPOLLOUT) != 0 && !flush(entry)) {
      close(key, true);
      return;
    }
  }
  settle(key);
  guest_work_();
}

bool Muxer::flush(Entry& entry) {
  if (!entry.host_write_closed && entry.conn.flush() == Connection::Flush::kBroken) {
    spdlog::debug("virtio-vsock {}: host port {}: the socket takes no more data", name_,
                  entry.conn.host_port());
    return false;
  }
  if (entry.conn.buffered() == 0 && entry.guest_shut_send && !entry.shut_wr_done) {
    ::shutdown(entry.conn.fd(), SHUT_WR);
    entry.shut_wr_done = true;
  }
  if (entry.conn.credit_update_due()) entry.pending |= kSendCreditUpdate;
  return true;
}

bool Muxer::wants_rx(const Entry& entry) const {
  if (entry.pending != 0) return true;
  if (entry.conn.state() != Connection::State::kEstablished || !entry.readable || entry.host_eof ||
      entry.guest_shut_rcv) {
    return false;
  }
  return entry.conn.peer_credit() > 0 || !entry.credit_requested;
}

void Muxer::settle(Key key) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  Entry& entry = *it->second;
  const bool sending_done =
      entry.host_write_closed || (entry.guest_shut_send && entry.conn.buffered() == 0);
  const bool receiving_done = entry.eof_reported || entry.guest_shut_rcv;
  if (sending_done && receiving_done) {
    spdlog::debug("virtio-vsock {}: host port {} guest port {} closed", name_,
                  entry.conn.host_port(), entry.conn.guest_port());
    close(key, true);
    return;
  }
  if (entry.registered) {
    uint32_t wanted = 0;
    if (entry.conn.state() == Connection::State::kEstablished && !entry.readable &&
        !entry.host_eof && !entry.guest_shut_rcv) {
      wanted |= EPOLLIN;
    }
    if (entry.conn.buffered() != 0) wanted |= EPOLLOUT;
    if (wanted != entry.events) {
      loop_.modify(entry.conn.fd(), wanted);
      entry.events = wanted;
    }
  }
  if (!entry.queued && wants_rx(entry)) {
    entry.queued = true;
    rx_ready_.push_back(key);
  }
}

void Muxer::close(Key key, bool send_rst) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  Entry& entry = *it->second;
  if (send_rst) queue_rst(entry.conn.host_port(), entry.conn.guest_port(), kTypeStream);
  if (entry.registered) loop_.remove(entry.conn.fd());
  connections_.erase(it);  // closes the socket; a stale key in rx_ready_ is skipped
  resume_listener();
}

void Muxer::queue_rst(uint32_t host_port, uint32_t guest_port, uint16_t type) {
  if (rsts_.size() >= kMaxQueuedRsts) {
    ++counters_.rsts_dropped;
    return;
  }
  rsts_.push_back(Rst{host_port, guest_port, type});
}

void Muxer::send(const Header& header, const DescriptorChain& chain) {
  const Key key = key_of(header.dst_port, header.src_port);
  auto it = connections_.find(key);
  if (it == connections_.end()) {
    if (header.op == kOpRequest) {
      connect_to_host(header);
    } else if (header.op != kOpRst) {
      queue_rst(header.dst_port, header.src_port, header.type);
    }
    return;
  }
  Entry& entry = *it->second;
  entry.conn.update_peer_credit(header.buf_alloc, header.fwd_cnt);
  if (entry.conn.peer_credit() > 0) entry.credit_requested = false;

  switch (header.op) {
    case kOpRequest:
      // The guest reuses a live pair: it lost track of it, so neither side keeps it.
      close(key, true);
      return;
    case kOpRst: close(key, false); return;
    case kOpResponse: {
      if (entry.conn.state() != Connection::State::kAwaitingResponse) {
        close(key, true);
        return;
      }
      entry.conn.set_established();
      // The first bytes on a fresh socket: its send buffer has room for them.
      const std::string ok = fmt::format("OK {}\n", entry.conn.host_port());
      const ssize_t n = ::send(entry.conn.fd(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n != static_cast<ssize_t>(ok.size())) {
        close(key, true);
        return;
      }
      break;
    }
    case kOpShutdown:
      if ((header.flags & kShutdownRcv) != 0 && !entry.guest_shut_rcv) {
        entry.guest_shut_rcv = true;
        ::shutdown(entry.conn.fd(), SHUT_RD);
      }
      if ((header.flags & kShutdownSend) != 0) entry.guest_shut_send = true;
      if (!flush(entry)) {
        close(key, true);
        return;
      }
      break;
    case kOpRw: {
      if (entry.conn.state() != Connection::State::kEstablished || entry.guest_shut_send) {
        close(key, true);
        return;
      }
      if (header.len == 0) break;
      const auto room = entry.conn.reserve(header.len);
      if (!room) {
        ++counters_.credit_overruns;
        if (!std::exchange(warned_credit_, true)) {
          spdlog::warn(
              "virtio-vsock {}: guest port {} sent {} bytes with {} buffered, beyond its credit "
              "of {}; connection reset (further ones are counted, not logged)",
              name_, uint32_t{header.src_port}, uint32_t{header.len}, entry.conn.buffered(),
              kBufAlloc);
        }
        close(key, true);
        return;
      }
      if (entry.host_write_closed) {
        entry.conn.discard_buffered();  // the socket is gone; the guest learns from our SHUTDOWN
      } else {
        // len fits the readable part: checked by the parser.
        chain.read(kHeaderSize, room->first);
        chain.read(kHeaderSize + room->first.size(), room->second);
      }
      if (!flush(entry)) {
        close(key, true);
        return;
      }
      break;
    }
    case kOpCreditUpdate: break;  // the credit fields are all it carries
    case kOpCreditRequest: entry.pending |= kSendCreditUpdate; break;
  }
  settle(key);
}

void Muxer::connect_to_host(const Header& header) {
  if (connections_.size() >= kMaxConnections) {
    queue_rst(header.dst_port, header.src_port, header.type);
    return;
  }
  const std::string path = fmt::format("{}_{}", uds_path_, header.dst_port);
  UniqueFd socket = connect_unix(path);
  if (!socket) {
    spdlog::debug("virtio-vsock {}: guest port {} to host port {}: {}: {}", name_,
                  uint32_t{header.src_port}, uint32_t{header.dst_port}, path, std::strerror(errno));
    queue_rst(header.dst_port, header.src_port, header.type);
    return;
  }
  const int fd = socket.get();
  const Key key = key_of(header.dst_port, header.src_port);
  auto entry = std::make_unique<Entry>(Connection(
      std::move(socket), header.dst_port, header.src_port, Connection::State::kEstablished));
  entry->conn.update_peer_credit(header.buf_alloc, header.fwd_cnt);
  entry->pending = kSendResponse;
  loop_.add(fd, 0, [this, key, fd](uint32_t events) { on_socket(key, fd, events); });
  connections_.emplace(key, std::move(entry));
  spdlog::debug("virtio-vsock {}: guest port {} connected to {}", name_, uint32_t{header.src_port},
                path);
  settle(key);
}

Header Muxer::header_for(uint32_t host_port, uint32_t guest_port, uint16_t op) const {
  Header header{};
  header.src_cid = kHostCid;
  header.dst_cid = guest_cid_;
  header.src_port = host_port;
  header.dst_port = guest_port;
  header.type = kTypeStream;
  header.op = op;
  return header;
}

uint32_t Muxer::write_packet(const DescriptorChain& chain, Header header,
                             std::span<const uint8_t> payload) {
  header.len = static_cast<uint32_t>(payload.size());
  chain.write(0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&header), kHeaderSize));
  chain.write(kHeaderSize, payload);
  return kHeaderSize + header.len;
}

uint32_t Muxer::fill_rx(Entry& entry, const DescriptorChain& chain) {
  Connection& conn = entry.conn;
  auto packet = [&](uint16_t op, std::span<const uint8_t> payload = {}, uint32_t flags = 0) {
    Header header = header_for(conn.host_port(), conn.guest_port(), op);
    header.flags = flags;
    header.buf_alloc = kBufAlloc;
    header.fwd_cnt = conn.fwd_cnt();
    conn.reported_fwd_cnt();
    return write_packet(chain, header, payload);
  };
  auto take = [&](Pending bit) {
    const bool set = (entry.pending & bit) != 0;
    entry.pending &= ~bit;
    return set;
  };

  if (take(kSendRequest)) return packet(kOpRequest);
  if (take(kSendResponse)) return packet(kOpResponse);
  if (take(kSendCreditUpdate)) return packet(kOpCreditUpdate);

  if (conn.state() == Connection::State::kEstablished && entry.readable && !entry.host_eof &&
      !entry.guest_shut_rcv) {
    const uint32_t credit = conn.peer_credit();
    if (credit == 0 && entry.credit_requested) return 0;
    // Without credit, peek: an EOF needs none, data needs a CREDIT_REQUEST.
    const size_t want =
        credit == 0
            ? 1
            : std::min<size_t>({credit, chain.writable_bytes() - kHeaderSize, staging_.size()});
    ssize_t n;
    do {
      n = ::recv(conn.fd(), staging_.data(), want, MSG_DONTWAIT | (credit == 0 ? MSG_PEEK : 0));
    } while (n < 0 && errno == EINTR);
    if (n > 0 && credit == 0) {
      entry.credit_requested = true;
      return packet(kOpCreditRequest);
    }
    if (n > 0) {
      conn.count_sent(static_cast<uint32_t>(n));
      return packet(kOpRw, std::span<const uint8_t>(staging_.data(), static_cast<size_t>(n)));
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      entry.readable = false;  // watched again
      return 0;
    }
    // EOF, or an error that ends the stream the same way.
    entry.host_eof = true;
    entry.pending |= kSendShutdown;
    entry.shutdown_flags = kShutdownSend | (entry.hung_up ? kShutdownRcv : 0);
  }

  if (take(kSendShutdown)) {
    entry.eof_reported = true;
    return packet(kOpShutdown, {}, entry.shutdown_flags);
  }
  return 0;
}

}  // namespace vmm::devices::virtio::vsock
