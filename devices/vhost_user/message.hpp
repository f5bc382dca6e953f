#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/util/error.hpp"

// The vhost-user wire format (QEMU docs/interop/vhost-user.rst): a 12-byte header (request,
// flags, payload size) then the payload, all in host byte order. Pure functions, so the parsing
// of what a backend sends is unit-tested and fuzzed without a socket.
namespace vmm::devices::vhost_user {

// Front-end message types (vhost-user protocol, "Front-end message types").
enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kGetConfig = 24,
  kSetConfig = 25
};

inline constexpr uint64_t kFeatureProtocolFeatures = uint64_t{1}
                                                     << 30;  // VHOST_USER_F_PROTOCOL_FEATURES
inline constexpr uint64_t kProtocolFeatureMq = uint64_t{1} << 0;
inline constexpr uint64_t kProtocolFeatureReplyAck = uint64_t{1} << 3;
inline constexpr uint64_t kProtocolFeatureConfig = uint64_t{1} << 9;
inline constexpr size_t kMaxMemoryRegions = 8;  // VHOST_MEMORY_BASELINE_NREGIONS

struct MemoryRegion {
  uint64_t guest_address;
  uint64_t size;
  uint64_t user_address;
  uint64_t mmap_offset;
};

struct VringAddress {
  uint32_t index;
  uint64_t desc_user_address;
  uint64_t used_user_address;
  uint64_t avail_user_address;
};

// What a backend did wrong: it died, hung, or sent something the protocol does not allow.
class BackendError : public Error {
 public:
  using Error::Error;
};

inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kFlagVersion = 0x1;  // bits 0-1: the protocol version, always 1
inline constexpr uint32_t kFlagReply = 0x4;
inline constexpr uint32_t kFlagNeedReply = 0x8;
inline constexpr uint32_t kMaxConfigSize = 256;  // VHOST_USER_MAX_CONFIG_SIZE
inline constexpr size_t kConfigHeaderSize = 12;  // offset, size, flags
// SET_VRING_KICK/CALL/ERR: the ring index is the payload's low byte; this bit says "no fd".
inline constexpr uint64_t kVringNoFd = uint64_t{1} << 8;
inline constexpr uint32_t kMaxVringFdIndex = 0xff;

// "GET_FEATURES" (or "request 77" for a code outside the enum).
std::string request_name(uint32_t code);
inline std::string request_name(Request request) {
  return request_name(static_cast<uint32_t>(request));
}

// Payload encoders, one per layout of the spec's "Message specification".
std::vector<uint8_t> u64_payload(uint64_t value);
std::vector<uint8_t> vring_state_payload(uint32_t index, uint32_t num);
std::vector<uint8_t> vring_address_payload(const VringAddress& address);
// Throws vmm::Error for zero or more than kMaxMemoryRegions regions.
std::vector<uint8_t> memory_table_payload(std::span<const MemoryRegion> regions);
// Throws vmm::Error for a size above kMaxConfigSize.
std::vector<uint8_t> config_payload(uint32_t offset, std::span<const uint8_t> data);
// Throws vmm::Error for an index above kMaxVringFdIndex.
std::vector<uint8_t> vring_fd_payload(uint32_t index, bool has_fd);

// One front-end message: header (version 1, NEED_REPLY when asked) and payload.
std::vector<uint8_t> encode_request(Request request, std::span<const uint8_t> payload,
                                    bool need_reply = false);

// Checks a reply's header against the request it answers and returns its payload size. Every
// reply but GET_CONFIG's carries exactly a u64 (or a vring state, also 8 bytes); GET_CONFIG's at
// most a config header and kMaxConfigSize bytes (nothing at all when the backend refuses). Throws
// BackendError for another request code, flags other than version 1 + REPLY, or a size the request
// does not allow.
uint32_t parse_reply_header(Request expected, std::span<const uint8_t, kHeaderSize> header);

// A whole reply (header and payload, exactly one message): its checked payload.
std::span<const uint8_t> parse_reply(Request expected, std::span<const uint8_t> message);

// Payload decoders, each checking the payload's size and values; BackendError when wrong.
uint64_t decode_u64(Request request, std::span<const uint8_t> payload);
// GET_QUEUE_NUM: at least one queue, at most what a virtio device can have.
uint16_t decode_queue_num(std::span<const uint8_t> payload);
// GET_VRING_BASE: the ring asked about, and a split ring's 16-bit index.
uint32_t decode_vring_base(uint32_t index, std::span<const uint8_t> payload);
// GET_CONFIG: the offset and size asked for, and that many bytes; an empty payload is a refusal.
std::vector<uint8_t> decode_config(uint32_t offset, uint32_t size,
                                   std::span<const uint8_t> payload);
// REPLY_ACK: zero is success, anything else the backend's refusal.
void check_ack(Request request, std::span<const uint8_t> payload);

}  // namespace vmm::devices::vhost_user
