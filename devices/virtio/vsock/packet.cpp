#include "devices/virtio/vsock/packet.hpp"

#include <cstring>

namespace vmm::devices::virtio::vsock {

const char* to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::kAccept: return "accepted";
    case Verdict::kShort: return "shorter than a header";
    case Verdict::kWrongAddress: return "not from the guest's cid to the host's";
    case Verdict::kBadLength: return "a length beyond the payload or the maximum";
    case Verdict::kBadType: return "not a stream packet";
    case Verdict::kUnknownOp: return "an unknown operation";
  }
  return "?";
}

VerdictPolicy verdict_policy(Verdict verdict) {
  switch (verdict) {
    // Well addressed: the sender hears of it.
    case Verdict::kBadType:
    case Verdict::kUnknownOp: return {true, spdlog::level::warn};
    case Verdict::kAccept:
    case Verdict::kShort:
    case Verdict::kWrongAddress:
    case Verdict::kBadLength: break;
  }
  return {false, spdlog::level::warn};
}

ParsedPacket parse_tx_packet(std::span<const uint8_t> head, uint32_t readable_bytes,
                             uint64_t guest_cid) {
  ParsedPacket packet{Verdict::kShort, Header{}};
  if (head.size() < kHeaderSize || readable_bytes < kHeaderSize) return packet;
  std::memcpy(&packet.header, head.data(), kHeaderSize);
  const Header& header = packet.header;
  if (header.src_cid != guest_cid || header.dst_cid != kHostCid) {
    packet.verdict = Verdict::kWrongAddress;
  } else if (header.len > readable_bytes - kHeaderSize || header.len > kMaxPayload) {
    packet.verdict = Verdict::kBadLength;
  } else if (header.type != kTypeStream) {
    packet.verdict = Verdict::kBadType;
  } else if (header.op < kOpRequest || header.op > kOpCreditRequest) {
    packet.verdict = Verdict::kUnknownOp;
  } else {
    packet.verdict = Verdict::kAccept;
  }
  return packet;
}

}  // namespace vmm::devices::virtio::vsock
