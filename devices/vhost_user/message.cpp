#include "devices/vhost_user/message.hpp"

#include <fmt/format.h>

#include <cstring>

namespace vmm::devices::vhost_user {

namespace {

constexpr size_t kVringStateSize = 8;         // index, num
constexpr size_t kVringAddressSize = 40;      // index, flags, desc, used, avail, log
constexpr size_t kMemoryTableHeaderSize = 8;  // nregions, padding
constexpr size_t kMemoryRegionSize = 32;

template <typename T>
void append(std::vector<uint8_t>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <typename T>
T read_at(std::span<const uint8_t> bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

void expect_size(Request request, std::span<const uint8_t> payload, size_t size) {
  if (payload.size() != size) {
    throw BackendError(fmt::format("reply to {}: {} payload bytes, expected {}",
                                   request_name(request), payload.size(), size));
  }
}

}  // namespace

std::string request_name(uint32_t code) {
  switch (static_cast<Request>(code)) {
    case Request::kGetFeatures: return "GET_FEATURES";
    case Request::kSetFeatures: return "SET_FEATURES";
    case Request::kSetOwner: return "SET_OWNER";
    case Request::kResetOwner: return "RESET_OWNER";
    case Request::kSetMemTable: return "SET_MEM_TABLE";
    case Request::kSetVringNum: return "SET_VRING_NUM";
    case Request::kSetVringAddr: return "SET_VRING_ADDR";
    case Request::kSetVringBase: return "SET_VRING_BASE";
    case Request::kGetVringBase: return "GET_VRING_BASE";
    case Request::kSetVringKick: return "SET_VRING_KICK";
    case Request::kSetVringCall: return "SET_VRING_CALL";
    case Request::kSetVringErr: return "SET_VRING_ERR";
    case Request::kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case Request::kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case Request::kGetQueueNum: return "GET_QUEUE_NUM";
    case Request::kSetVringEnable: return "SET_VRING_ENABLE";
    case Request::kGetConfig: return "GET_CONFIG";
    case Request::kSetConfig: return "SET_CONFIG";
  }
  return fmt::format("request {}", code);
}

std::vector<uint8_t> u64_payload(uint64_t value) {
  std::vector<uint8_t> out;
  append(out, value);
  return out;
}

std::vector<uint8_t> vring_state_payload(uint32_t index, uint32_t num) {
  std::vector<uint8_t> out;
  out.reserve(kVringStateSize);
  append(out, index);
  append(out, num);
  return out;
}

std::vector<uint8_t> vring_address_payload(const VringAddress& address) {
  std::vector<uint8_t> out;
  out.reserve(kVringAddressSize);
  append(out, address.index);
  append(out, uint32_t{0});  // flags: no VHOST_VRING_F_LOG, vmm does not log dirty pages
  append(out, address.desc_user_address);
  append(out, address.used_user_address);
  append(out, address.avail_user_address);
  append(out, uint64_t{0});  // log address
  return out;
}

std::vector<uint8_t> memory_table_payload(std::span<const MemoryRegion> regions) {
  if (regions.empty() || regions.size() > kMaxMemoryRegions) {
    fail("vhost-user memory table: {} regions (1 to {} allowed)", regions.size(),
         kMaxMemoryRegions);
  }
  std::vector<uint8_t> out;
  out.reserve(kMemoryTableHeaderSize + regions.size() * kMemoryRegionSize);
  append(out, static_cast<uint32_t>(regions.size()));
  append(out, uint32_t{0});  // padding
  for (const MemoryRegion& region : regions) {
    append(out, region.guest_address);
    append(out, region.size);
    append(out, region.user_address);
    append(out, region.mmap_offset);
  }
  return out;
}

std::vector<uint8_t> config_payload(uint32_t offset, std::span<const uint8_t> data) {
  if (data.size() > kMaxConfigSize) {
    fail("vhost-user config access of {} bytes (at most {})", data.size(), kMaxConfigSize);
  }
  std::vector<uint8_t> out;
  append(out, offset);
  append(out, static_cast<uint32_t>(data.size()));
  append(out, uint32_t{0});  // flags: VHOST_SET_CONFIG_TYPE_FRONTEND
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::vector<uint8_t> vring_fd_payload(uint32_t index, bool has_fd) {
  if (index > kMaxVringFdIndex) fail("vhost-user ring {}: index above {}", index, kMaxVringFdIndex);
  return u64_payload(has_fd ? index : index | kVringNoFd);
}

std::vector<uint8_t> encode_request(Request request, std::span<const uint8_t> payload,
                                    bool need_reply) {
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize + payload.size());
  append(out, static_cast<uint32_t>(request));
  append(out, need_reply ? kFlagVersion | kFlagNeedReply : kFlagVersion);
  append(out, static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

uint32_t parse_reply_header(Request expected, std::span<const uint8_t, kHeaderSize> header) {
  const auto code = read_at<uint32_t>(header, 0);
  const auto flags = read_at<uint32_t>(header, 4);
  const auto size = read_at<uint32_t>(header, 8);
  if (code != static_cast<uint32_t>(expected)) {
    throw BackendError(
        fmt::format("answered {} with {}", request_name(expected), request_name(code)));
  }
  if (flags != (kFlagVersion | kFlagReply)) {
    throw BackendError(fmt::format("reply to {}: flags {:#x}, expected {:#x} (version 1, REPLY)",
                                   request_name(expected), flags, kFlagVersion | kFlagReply));
  }
  const bool config = expected == Request::kGetConfig;
  // An empty GET_CONFIG reply is libvhost-user's refusal; decode_config names it.
  const size_t min_size = config ? 0 : sizeof(uint64_t);
  const size_t max_size = config ? kConfigHeaderSize + kMaxConfigSize : sizeof(uint64_t);
  if (size < min_size || size > max_size) {
    throw BackendError(fmt::format("reply to {}: payload size {} (allowed {} to {})",
                                   request_name(expected), size, min_size, max_size));
  }
  return size;
}

std::span<const uint8_t> parse_reply(Request expected, std::span<const uint8_t> message) {
  if (message.size() < kHeaderSize) {
    throw BackendError(fmt::format("reply to {}: {} bytes, shorter than a header",
                                   request_name(expected), message.size()));
  }
  const uint32_t size = parse_reply_header(expected, message.first<kHeaderSize>());
  const auto payload = message.subspan(kHeaderSize);
  if (payload.size() != size) {
    throw BackendError(fmt::format("reply to {}: {} payload bytes, header says {}",
                                   request_name(expected), payload.size(), size));
  }
  return payload;
}

uint64_t decode_u64(Request request, std::span<const uint8_t> payload) {
  expect_size(request, payload, sizeof(uint64_t));
  return read_at<uint64_t>(payload, 0);
}

uint16_t decode_queue_num(std::span<const uint8_t> payload) {
  const uint64_t queues = decode_u64(Request::kGetQueueNum, payload);
  if (queues == 0 || queues > UINT16_MAX) {
    throw BackendError(
        fmt::format("reply to GET_QUEUE_NUM: {} queues (1 to {})", queues, UINT16_MAX));
  }
  return static_cast<uint16_t>(queues);
}

uint32_t decode_vring_base(uint32_t index, std::span<const uint8_t> payload) {
  expect_size(Request::kGetVringBase, payload, kVringStateSize);
  const auto replied_index = read_at<uint32_t>(payload, 0);
  const auto base = read_at<uint32_t>(payload, 4);
  if (replied_index != index) {
    throw BackendError(
        fmt::format("reply to GET_VRING_BASE {}: about ring {}", index, replied_index));
  }
  if (base > UINT16_MAX) {
    throw BackendError(fmt::format("reply to GET_VRING_BASE {}: base {} above a split ring's {}",
                                   index, base, UINT16_MAX));
  }
  return base;
}

std::vector<uint8_t> decode_config(uint32_t offset, uint32_t size,
                                   std::span<const uint8_t> payload) {
  if (payload.empty()) throw BackendError("GET_CONFIG refused (an empty reply)");
  if (payload.size() < kConfigHeaderSize) {
    throw BackendError(fmt::format("reply to GET_CONFIG: {} payload bytes, shorter than its header",
                                   payload.size()));
  }
  const auto replied_offset = read_at<uint32_t>(payload, 0);
  const auto replied_size = read_at<uint32_t>(payload, 4);
  if (replied_offset != offset || replied_size != size) {
    throw BackendError(
        fmt::format("reply to GET_CONFIG: {} bytes at offset {}, asked for {} bytes at offset {}",
                    replied_size, replied_offset, size, offset));
  }
  const auto data = payload.subspan(kConfigHeaderSize);
  if (data.size() != size) {
    throw BackendError(
        fmt::format("reply to GET_CONFIG: {} config bytes, its header says {}", data.size(), size));
  }
  return {data.begin(), data.end()};
}

void check_ack(Request request, std::span<const uint8_t> payload) {
  const uint64_t status = decode_u64(request, payload);
  if (status != 0) {
    throw BackendError(fmt::format("{} refused (status {})", request_name(request), status));
  }
}

}  // namespace vmm::devices::vhost_user
