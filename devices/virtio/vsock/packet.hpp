#pragma once

#include <spdlog/common.h>

#include <cstdint>
#include <span>

namespace vmm::devices::virtio::vsock {

// The host's address (VMADDR_CID_HOST).
inline constexpr uint64_t kHostCid = 2;

// struct virtio_vsock_hdr (virtio 1.2, 5.10.6), little-endian like the x86 host.
#pragma pack(push, 1)
struct Header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
#pragma pack(pop)
static_assert(sizeof(Header) == 44);
inline constexpr uint32_t kHeaderSize = sizeof(Header);

inline constexpr uint16_t kTypeStream = 1;

inline constexpr uint16_t kOpRequest = 1;
inline constexpr uint16_t kOpResponse = 2;
inline constexpr uint16_t kOpRst = 3;
inline constexpr uint16_t kOpShutdown = 4;
inline constexpr uint16_t kOpRw = 5;
inline constexpr uint16_t kOpCreditUpdate = 6;
inline constexpr uint16_t kOpCreditRequest = 7;

// SHUTDOWN flags: the sender will receive / send no more.
inline constexpr uint32_t kShutdownRcv = 1;
inline constexpr uint32_t kShutdownSend = 2;

// struct virtio_vsock_event (virtio 1.2, 5.10.6.4): a le32 id, of which there is one.
inline constexpr uint32_t kEventTransportReset = 0;
inline constexpr uint32_t kEventSize = sizeof(uint32_t);

// The largest RW payload accepted from the driver (Linux sends at most 64 KiB per packet).
inline constexpr uint32_t kMaxPayload = 64 * 1024;

// What to do with a packet the driver transmitted.
enum class Verdict {
  kAccept,
  kShort,         // the chain is shorter than a header: drop
  kWrongAddress,  // not from the guest's cid or not to the host: drop (no one to answer)
  kBadLength,     // len beyond the chain's payload or kMaxPayload: drop
  kBadType,       // not a stream packet: answer RST
  kUnknownOp,     // answer RST
};

inline constexpr size_t kVerdictKinds = static_cast<size_t>(Verdict::kUnknownOp) + 1;

const char* to_string(Verdict verdict);

// What the device does with a packet it does not accept, decided here for every kind: answer a
// well-addressed one with an RST (unless it is an RST itself), or drop it with no one to answer.
// The first of each kind is logged at `level`, the rest at debug (the guest decides how many).
struct VerdictPolicy {
  bool answer_with_rst;
  spdlog::level::level_enum level;
};
VerdictPolicy verdict_policy(Verdict verdict);

struct ParsedPacket {
  Verdict verdict;
  Header header;  // all zeros when kShort
};

// Parses a packet the driver transmitted: `head` holds the first bytes of the chain's readable
// part (up to kHeaderSize), `readable_bytes` is that part's whole size. The checks run in the
// order of the enum: an RST answers only a packet whose addresses and length make sense.
ParsedPacket parse_tx_packet(std::span<const uint8_t> head, uint32_t readable_bytes,
                             uint64_t guest_cid);

}  // namespace vmm::devices::virtio::vsock
