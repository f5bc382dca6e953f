#include "devices/virtio/block_request.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

namespace vmm::devices::virtio {

namespace {

constexpr uint64_t kHeaderBytes = 16;   // struct virtio_blk_req's header
constexpr uint64_t kSegmentBytes = 16;  // struct virtio_blk_discard_write_zeroes

BlockRequest refused(BlockError error, std::string detail = {}) {
  BlockRequest request;
  request.kind = BlockRequest::Kind::kRefused;
  request.error = error;
  request.detail = std::move(detail);
  return request;
}

uint32_t load_le32(const uint8_t* bytes) {
  uint32_t value;
  std::memcpy(&value, bytes, sizeof(value));  // x86 hosts only: little-endian like virtio
  return value;
}

uint64_t load_le64(const uint8_t* bytes) {
  uint64_t value;
  std::memcpy(&value, bytes, sizeof(value));
  return value;
}

// Whether `sectors` sectors from `sector` lie on the disk, without overflowing.
bool in_range(uint64_t sector, uint64_t sectors, uint64_t capacity) {
  return sector <= capacity && sectors <= capacity - sector;
}

// Appends host views of bytes [begin, end) of the chain's readable or writable part to `out`,
// one per buffer they touch. Returns why that is refused, or nullopt.
std::optional<BlockRequest> collect_segments(const GuestMemory& memory,
                                             const DescriptorChain& chain, bool writable,
                                             uint64_t begin, uint64_t end,
                                             std::vector<iovec>& out) {
  uint64_t position = 0;  // of the current buffer within its part
  for (const Buffer& buffer : chain) {
    if (buffer.writable != writable) continue;
    const uint64_t start = position;
    position += buffer.len;
    const uint64_t from = std::max(begin, start);
    const uint64_t to = std::min(end, position);
    if (from >= to) continue;
    const uint64_t bytes = to - from;
    if (bytes > kBlkSizeMax) {
      return refused(BlockError::kSegmentTooLarge,
                     fmt::format("{} bytes, size_max {}", bytes, kBlkSizeMax));
    }
    if (out.size() == kBlkSegMax) {
      return refused(BlockError::kTooManySegments, fmt::format("seg_max {}", kBlkSegMax));
    }
    // pop() checked the buffers already; a failure here would be a bug, still not a host access.
    auto host = memory.slice(buffer.addr + (from - start), bytes);
    if (!host) return refused(BlockError::kBufferOutsideMemory, fmt::format("{:#x}", buffer.addr));
    out.push_back({host->data(), host->size()});
  }
  return std::nullopt;
}

// IN and OUT: the data is the writable part before the status byte, or the readable part after
// the header.
BlockRequest parse_transfer(const GuestMemory& memory, const DescriptorChain& chain, bool write,
                            uint64_t sector, const BlockLimits& limits) {
  const uint64_t begin = write ? kHeaderBytes : 0;
  const uint64_t end = write ? chain.readable_bytes() : chain.writable_bytes() - 1;
  const uint64_t length = end - begin;
  if (length % kSectorSize != 0) {
    return refused(BlockError::kPartialSector, fmt::format("data length {}", length));
  }
  if (!in_range(sector, length / kSectorSize, limits.capacity_sectors)) {
    return refused(BlockError::kBeyondCapacity,
                   fmt::format("sectors {}+{}, capacity {}", sector, length / kSectorSize,
                               limits.capacity_sectors));
  }
  BlockRequest request;
  request.kind = write ? BlockRequest::Kind::kWrite : BlockRequest::Kind::kRead;
  request.offset = sector * kSectorSize;
  request.length = length;
  if (auto refusal = collect_segments(memory, chain, !write, begin, end, request.data)) {
    return std::move(*refusal);
  }
  return request;
}

BlockRequest parse_discard_or_write_zeroes(const DescriptorChain& chain, bool discard,
                                           const BlockLimits& limits) {
  // max_discard_seg and max_write_zeroes_seg are 1: exactly one segment after the header.
  const uint64_t payload = chain.readable_bytes() - kHeaderBytes;
  if (payload != kSegmentBytes) {
    return refused(BlockError::kBadSegmentCount, fmt::format("{} bytes of segments", payload));
  }
  std::array<uint8_t, kSegmentBytes> segment;
  if (chain.read(kHeaderBytes, segment) != segment.size()) {
    return refused(BlockError::kUnreadableSegment);
  }
  const uint64_t sector = load_le64(&segment[0]);
  const uint32_t sectors = load_le32(&segment[8]);
  const uint32_t flags = load_le32(&segment[12]);
  if ((flags & ~kBlkFlagUnmap) != 0) {
    return refused(BlockError::kUnknownFlags, fmt::format("flags {:#x}", flags));
  }
  // The spec reserves UNMAP for write zeroes.
  if (discard && (flags & kBlkFlagUnmap)) return refused(BlockError::kDiscardWithUnmap);
  const uint32_t max = discard ? kBlkMaxDiscardSectors : kBlkMaxWriteZeroesSectors;
  if (sectors > max) {
    return refused(BlockError::kTooManySectors,
                   fmt::format("{} sectors, maximum {}", sectors, max));
  }
  if (!in_range(sector, sectors, limits.capacity_sectors)) {
    return refused(BlockError::kBeyondCapacity, fmt::format("sectors {}+{}, capacity {}", sector,
                                                            sectors, limits.capacity_sectors));
  }
  BlockRequest request;
  request.kind = discard ? BlockRequest::Kind::kDiscard : BlockRequest::Kind::kWriteZeroes;
  request.offset = sector * kSectorSize;
  request.length = uint64_t{sectors} * kSectorSize;
  request.unmap = flags & kBlkFlagUnmap;
  return request;
}

BlockRequest parse_body(const GuestMemory& memory, const DescriptorChain& chain,
                        const BlockLimits& limits) {
  // The header may span descriptors: read it through the chain.
  std::array<uint8_t, kHeaderBytes> header;
  if (chain.read(0, header) != header.size()) {
    return refused(BlockError::kShortHeader,
                   fmt::format("{} readable bytes", chain.readable_bytes()));
  }
  const uint32_t type = load_le32(&header[0]);
  const uint64_t sector = load_le64(&header[8]);

  const bool modifies =
      type == kBlkTypeOut || type == kBlkTypeDiscard || type == kBlkTypeWriteZeroes;
  if (modifies && limits.read_only) {
    return refused(BlockError::kReadOnly, fmt::format("type {}", type));
  }
  switch (type) {
    case kBlkTypeIn:
    case kBlkTypeOut: return parse_transfer(memory, chain, type == kBlkTypeOut, sector, limits);
    case kBlkTypeFlush: {
      BlockRequest request;
      request.kind = BlockRequest::Kind::kFlush;
      return request;
    }
    case kBlkTypeGetId: {
      BlockRequest request;
      request.kind = BlockRequest::Kind::kGetId;
      return request;
    }
    case kBlkTypeDiscard:
      if (!limits.discard) return refused(BlockError::kNotNegotiated, "discard");
      return parse_discard_or_write_zeroes(chain, true, limits);
    case kBlkTypeWriteZeroes:
      if (!limits.write_zeroes) return refused(BlockError::kNotNegotiated, "write zeroes");
      return parse_discard_or_write_zeroes(chain, false, limits);
    default: return refused(BlockError::kUnsupportedType, fmt::format("type {}", type));
  }
}

}  // namespace

BlockErrorPolicy block_error_policy(BlockError error) {
  using enum BlockError;
  using spdlog::level::debug;
  using spdlog::level::warn;
  switch (error) {
    case kNoStatusByte: return {false, kBlkStatusIoErr, warn};
    // Legal requests for what we do not offer, or did not agree to: a driver may probe.
    case kUnsupportedType:
    case kNotNegotiated:
    case kUnknownFlags:
    case kDiscardWithUnmap: return {true, kBlkStatusUnsupp, debug};
    // A legal write to a read-only disk, or one that runs off its end (a partition table that
    // claims more than the image has): the guest's business, answered with IOERR.
    case kReadOnly:
    case kBeyondCapacity: return {true, kBlkStatusIoErr, debug};
    // The driver broke the spec or our advertised limits; or the host failed (the guest sees an
    // I/O error, the operator a warning).
    case kShortHeader:
    case kPartialSector:
    case kSegmentTooLarge:
    case kTooManySegments:
    case kBufferOutsideMemory:
    case kBadSegmentCount:
    case kUnreadableSegment:
    case kTooManySectors:
    case kHostIo:
    case kShortTransfer: break;
  }
  return {true, kBlkStatusIoErr, warn};
}

const char* block_error_name(BlockError error) {
  using enum BlockError;
  switch (error) {
    case kNoStatusByte: return "no writable byte for the status";
    case kShortHeader: return "header shorter than 16 bytes";
    case kUnsupportedType: return "unsupported request type";
    case kNotNegotiated: return "feature not negotiated";
    case kReadOnly: return "modifying request on a read-only disk";
    case kPartialSector: return "data length not a multiple of 512";
    case kBeyondCapacity: return "beyond the disk's capacity";
    case kSegmentTooLarge: return "data segment above size_max";
    case kTooManySegments: return "more data segments than seg_max";
    case kBufferOutsideMemory: return "data buffer outside guest memory";
    case kBadSegmentCount: return "not exactly one discard/write-zeroes segment";
    case kUnreadableSegment: return "unreadable discard/write-zeroes segment";
    case kUnknownFlags: return "unknown segment flags";
    case kDiscardWithUnmap: return "discard with UNMAP";
    case kTooManySectors: return "more sectors than the maximum";
    case kHostIo: return "host I/O error";
    case kShortTransfer: return "short transfer on the host";
  }
  return "unknown";
}

BlockRequest parse_block_request(const GuestMemory& memory, const DescriptorChain& chain,
                                 const BlockLimits& limits) {
  if (chain.writable_bytes() == 0) return refused(BlockError::kNoStatusByte);
  BlockRequest request = parse_body(memory, chain, limits);
  request.status_offset = chain.writable_bytes() - 1;
  return request;
}

}  // namespace vmm::devices::virtio
