// A vhost-user backend's replies (devices/vhost_user): whatever a hostile or broken backend sends
// must be refused with BackendError and nothing else, never crash or hang; what is accepted
// satisfies the checks (queue count, a split ring's base, the config bytes asked for).
//
// Input: u8 mode. Mode even: u8 request (an index into kReplied), then one message for
// parse_reply and the request's decoder. Mode odd: u8 flags (bit 0: negotiate REPLY_ACK), u8 count
// (at most kMaxCalls), that many call bytes (an index into kReplied: which BackendChannel method
// is called), then the backend's byte stream, written to the channel's socket before the calls
// and followed by end-of-file, so a short stream fails at once rather than by the timeout.

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "devices/vhost_user/backend_channel.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {
namespace {

using devices::vhost_user::BackendChannel;
using devices::vhost_user::BackendError;
using devices::vhost_user::Request;
namespace vu = devices::vhost_user;

constexpr std::array kReplied = {Request::kGetFeatures,  Request::kGetProtocolFeatures,
                                 Request::kGetQueueNum,  Request::kGetVringBase,
                                 Request::kGetConfig,    Request::kSetMemTable,
                                 Request::kSetVringNum,  Request::kSetVringEnable,
                                 Request::kSetVringKick, Request::kSetFeatures};
constexpr size_t kMaxCalls = 8;
constexpr uint32_t kRing = 1;
constexpr uint32_t kConfigOffset = 4;
constexpr uint32_t kConfigSize = 16;

Request pick(uint8_t byte) {
  return kReplied[byte % kReplied.size()];
}

// Checks what a decoder accepted.
void check_decoded(Request request, std::span<const uint8_t> payload) {
  switch (request) {
    case Request::kGetQueueNum:
      VMM_FUZZ_CHECK(vu::decode_queue_num(payload) >= 1, "zero queues accepted");
      break;
    case Request::kGetVringBase:
      VMM_FUZZ_CHECK(vu::decode_vring_base(kRing, payload) <= UINT16_MAX, "base above 16 bits");
      break;
    case Request::kGetConfig:
      VMM_FUZZ_CHECK(vu::decode_config(kConfigOffset, kConfigSize, payload).size() == kConfigSize,
                     "config of another size accepted");
      break;
    case Request::kGetFeatures:
    case Request::kGetProtocolFeatures: vu::decode_u64(request, payload); break;
    default: vu::check_ack(request, payload);
  }
}

void parse(Reader& in) {
  const Request request = pick(in.u8());
  const auto message = in.bytes(in.remaining());
  try {
    check_decoded(request, vu::parse_reply(request, message));
  } catch (const BackendError&) {
    // The refusal this target expects; any other exception escapes and is a crash.
  }
}

void call(BackendChannel& channel, Request request, int fd) {
  switch (request) {
    case Request::kGetFeatures: channel.get_features(); break;
    case Request::kGetProtocolFeatures: channel.get_protocol_features(); break;
    case Request::kGetQueueNum:
      VMM_FUZZ_CHECK(channel.get_queue_num() >= 1, "zero queues accepted");
      break;
    case Request::kGetVringBase:
      VMM_FUZZ_CHECK(channel.get_vring_base(kRing) <= UINT16_MAX, "base above 16 bits");
      break;
    case Request::kGetConfig:
      VMM_FUZZ_CHECK(channel.get_config(kConfigOffset, kConfigSize).size() == kConfigSize,
                     "config of another size accepted");
      break;
    case Request::kSetMemTable: {
      const std::array regions = {vu::MemoryRegion{0, 0x1000, 0x7f00'0000'0000, 0}};
      const std::array fds = {fd};
      channel.set_mem_table(regions, fds);
      break;
    }
    case Request::kSetVringNum: channel.set_vring_num(kRing, 256); break;
    case Request::kSetVringEnable: channel.set_vring_enable(kRing, true); break;
    case Request::kSetVringKick: channel.set_vring_kick(kRing, fd); break;
    default: channel.set_features(0); break;
  }
}

void converse(Reader& in) {
  const bool reply_ack = in.flag();
  std::vector<Request> calls(std::min<size_t>(in.u8(), kMaxCalls));
  for (Request& request : calls) request = pick(in.u8());
  const auto stream = in.bytes(in.remaining());

  std::array<int, 2> ends{};
  VMM_FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends.data()) == 0,
                 "socketpair");
  UniqueFd backend(ends[1]);
  BackendChannel channel(UniqueFd(ends[0]), "fuzz", std::chrono::seconds(1));
  // The whole stream fits the socket's buffer (libFuzzer's inputs are a few KiB); then EOF.
  VMM_FUZZ_CHECK(
      ::send(backend.get(), stream.data(), stream.size(), 0) == static_cast<ssize_t>(stream.size()),
      "stream not buffered");
  ::shutdown(backend.get(), SHUT_WR);
  // Any fd will do to pass along: the backend's own end.
  const int fd = backend.get();
  try {
    if (reply_ack) channel.set_protocol_features(vu::kProtocolFeatureReplyAck);
  } catch (const BackendError&) {
  }
  for (const Request request : calls) {
    const bool was_dead = channel.dead();
    try {
      call(channel, request, fd);
      VMM_FUZZ_CHECK(!was_dead, "a dead channel answered");
    } catch (const BackendError&) {
      VMM_FUZZ_CHECK(channel.dead(), "a failed call left the channel alive");
    }
  }
}

void run(Reader& in) {
  if (!in.flag()) {
    parse(in);
  } else {
    converse(in);
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
