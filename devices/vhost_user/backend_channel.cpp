#include "devices/vhost_user/backend_channel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/util/error.hpp"

namespace vmm::devices::vhost_user {

namespace {

using Clock = std::chrono::steady_clock;

// Room for a few fds in a reply: none are allowed, and any received are closed (the kernel closes
// those beyond the room and sets MSG_CTRUNC, which fails the reply too).
constexpr size_t kReplyFdRoom = 8;

// Closes every fd a control message carried; returns how many there were.
size_t close_received_fds(msghdr& message) {
  size_t count = 0;
  for (cmsghdr* cmsg = CMSG_FIRSTHDR(&message); cmsg != nullptr;
       cmsg = CMSG_NXTHDR(&message, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    const size_t fds = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < fds; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
      ::close(fd);
    }
    count += fds;
  }
  return count;
}

}  // namespace

BackendChannel::BackendChannel(UniqueFd socket, std::string name,
                               std::chrono::milliseconds reply_timeout)
    : socket_(std::move(socket)), name_(std::move(name)), reply_timeout_(reply_timeout) {
  // Every wait is a poll with a deadline, so a backend that stops reading or answering can't
  // block the owner's thread.
  const int flags = ::fcntl(socket_.get(), F_GETFL);
  if (flags < 0 || ::fcntl(socket_.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    throw_errno(name_ + ": socket");
  }
}

UniqueFd BackendChannel::connect(const std::string& path) {
  const std::string what = "socket=" + path;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    fail("{}: not a usable Unix socket path (empty or longer than {} bytes)", what,
         sizeof(address.sun_path) - 1);
  }
  std::memcpy(address.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno(what);
  int result;
  do {
    result = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  } while (result != 0 && errno == EINTR);
  if (result != 0) throw_errno(what);
  return fd;
}

template <typename Exchange>
auto BackendChannel::guarded(Exchange exchange) {
  if (failure_) throw BackendError(fmt::format("{}: backend failed earlier: {}", name_, *failure_));
  try {
    return exchange();
  } catch (const Error& error) {
    failure_ = error.what();
    throw BackendError(fmt::format("{}: {}", name_, error.what()));
  }
}

template <typename Decode>
auto BackendChannel::query(Request request, std::span<const uint8_t> payload, Decode decode) {
  return guarded([&] {
    const auto deadline = Clock::now() + reply_timeout_;
    send_message(request, encode_request(request, payload), {}, deadline);
    return decode(receive_reply(request, deadline));
  });
}

void BackendChannel::command(Request request, std::span<const uint8_t> payload,
                             std::span<const int> fds) {
  guarded([&] {
    const auto deadline = Clock::now() + reply_timeout_;
    send_message(request, encode_request(request, payload, reply_ack_), fds, deadline);
    if (reply_ack_) check_ack(request, receive_reply(request, deadline));
  });
}

void BackendChannel::send_message(Request request, std::span<const uint8_t> message,
                                  std::span<const int> fds, Clock::time_point deadline) {
  const std::string what = request_name(request);
  alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(int) * kMaxMemoryRegions)> control{};
  if (fds.size() > kMaxMemoryRegions) {
    fail("{}: {} fds (at most {})", what, fds.size(), kMaxMemoryRegions);
  }
  size_t sent = 0;
  while (sent < message.size()) {
    iovec iov{const_cast<uint8_t*>(message.data() + sent), message.size() - sent};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    // The fds travel with the first byte; a partial send has delivered them already.
    if (sent == 0 && !fds.empty()) {
      header.msg_control = control.data();
      header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* cmsg = CMSG_FIRSTHDR(&header);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }
    const ssize_t n = ::sendmsg(socket_.get(), &header, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno == EAGAIN) {
      wait_ready(POLLOUT, deadline, what + " not taken");
    } else if (errno != EINTR) {
      throw Error(errno_message("sending " + what, errno));
    }
  }
}

std::vector<uint8_t> BackendChannel::receive_reply(Request request, Clock::time_point deadline) {
  std::array<uint8_t, kHeaderSize> header{};
  receive_exact(request, header, deadline);
  std::vector<uint8_t> payload(parse_reply_header(request, header));
  receive_exact(request, payload, deadline);
  return payload;
}

void BackendChannel::receive_exact(Request request, std::span<uint8_t> out,
                                   Clock::time_point deadline) {
  alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(int) * kReplyFdRoom)> control{};
  size_t received = 0;
  while (received < out.size()) {
    iovec iov{out.data() + received, out.size() - received};
    msghdr header{};
    header.msg_iov = &iov;
    header.msg_iovlen = 1;
    header.msg_control = control.data();
    header.msg_controllen = control.size();
    const ssize_t n = ::recvmsg(socket_.get(), &header, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EAGAIN) {
        wait_ready(POLLIN, deadline, "no reply to " + request_name(request));
      } else if (errno != EINTR) {
        throw Error(errno_message("receiving the reply to " + request_name(request), errno));
      }
      continue;
    }
    const size_t fds = close_received_fds(header);
    if (fds != 0 || (header.msg_flags & MSG_CTRUNC) != 0) {
      throw BackendError(
          fmt::format("reply to {}: carries file descriptors", request_name(request)));
    }
    if (n == 0) {
      throw BackendError(fmt::format("closed the connection while vmm waited for the reply to {}",
                                     request_name(request)));
    }
    received += static_cast<size_t>(n);
  }
}

void BackendChannel::wait_ready(short events, Clock::time_point deadline,
                                const std::string& what) const {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      throw BackendError(fmt::format("{} within {} ms", what, reply_timeout_.count()));
    }
    pollfd watched{socket_.get(), events, 0};
    const int ready = ::poll(&watched, 1, static_cast<int>(left.count()));
    if (ready > 0) return;  // ready, or hung up: the next call says which
    if (ready < 0 && errno != EINTR) throw_errno("poll");
  }
}

void BackendChannel::set_owner() {
  command(Request::kSetOwner, {});
}

uint64_t BackendChannel::get_features() {
  return query(Request::kGetFeatures, {}, [](std::span<const uint8_t> payload) {
    return decode_u64(Request::kGetFeatures, payload);
  });
}

void BackendChannel::set_features(uint64_t features) {
  command(Request::kSetFeatures, u64_payload(features));
}

uint64_t BackendChannel::get_protocol_features() {
  return query(Request::kGetProtocolFeatures, {}, [](std::span<const uint8_t> payload) {
    return decode_u64(Request::kGetProtocolFeatures, payload);
  });
}

void BackendChannel::set_protocol_features(uint64_t features) {
  command(Request::kSetProtocolFeatures, u64_payload(features));
  reply_ack_ = (features & kProtocolFeatureReplyAck) != 0;
}

uint16_t BackendChannel::get_queue_num() {
  return query(Request::kGetQueueNum, {}, decode_queue_num);
}

std::vector<uint8_t> BackendChannel::get_config(uint32_t offset, uint32_t size) {
  if (size > kMaxConfigSize)
    fail("{}: GET_CONFIG of {} bytes (at most {})", name_, size, kMaxConfigSize);
  const std::vector<uint8_t> zeros(size);
  return query(
      Request::kGetConfig, config_payload(offset, zeros),
      [&](std::span<const uint8_t> payload) { return decode_config(offset, size, payload); });
}

void BackendChannel::set_mem_table(std::span<const MemoryRegion> regions,
                                   std::span<const int> fds) {
  if (fds.size() != regions.size()) {
    fail("{}: SET_MEM_TABLE with {} regions and {} fds (one each)", name_, regions.size(),
         fds.size());
  }
  command(Request::kSetMemTable, memory_table_payload(regions), fds);
}

void BackendChannel::set_vring_num(uint32_t index, uint32_t size) {
  command(Request::kSetVringNum, vring_state_payload(index, size));
}

void BackendChannel::set_vring_addr(const VringAddress& address) {
  command(Request::kSetVringAddr, vring_address_payload(address));
}

void BackendChannel::set_vring_base(uint32_t index, uint32_t base) {
  command(Request::kSetVringBase, vring_state_payload(index, base));
}

uint32_t BackendChannel::get_vring_base(uint32_t index) {
  return query(
      Request::kGetVringBase, vring_state_payload(index, 0),
      [index](std::span<const uint8_t> payload) { return decode_vring_base(index, payload); });
}

void BackendChannel::set_vring_kick(uint32_t index, int eventfd) {
  const std::array<int, 1> fd{eventfd};
  command(Request::kSetVringKick, vring_fd_payload(index, eventfd >= 0),
          eventfd >= 0 ? std::span<const int>(fd) : std::span<const int>());
}

void BackendChannel::set_vring_call(uint32_t index, int eventfd) {
  const std::array<int, 1> fd{eventfd};
  command(Request::kSetVringCall, vring_fd_payload(index, eventfd >= 0),
          eventfd >= 0 ? std::span<const int>(fd) : std::span<const int>());
}

void BackendChannel::set_vring_enable(uint32_t index, bool enable) {
  command(Request::kSetVringEnable, vring_state_payload(index, enable ? 1 : 0));
}

}  // namespace vmm::devices::vhost_user
