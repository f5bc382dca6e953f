#pragma once

#include <sys/uio.h>

#include <spdlog/common.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "devices/virtio/descriptor_chain.hpp"

namespace vmm::devices::virtio {

// virtio-blk request types (virtio 1.2, 5.2.6).
inline constexpr uint32_t kBlkTypeIn = 0;
inline constexpr uint32_t kBlkTypeOut = 1;
inline constexpr uint32_t kBlkTypeFlush = 4;
inline constexpr uint32_t kBlkTypeGetId = 8;
inline constexpr uint32_t kBlkTypeDiscard = 11;
inline constexpr uint32_t kBlkTypeWriteZeroes = 13;

// Status byte values.
inline constexpr uint8_t kBlkStatusOk = 0;
inline constexpr uint8_t kBlkStatusIoErr = 1;
inline constexpr uint8_t kBlkStatusUnsupp = 2;

// virtio_blk_discard_write_zeroes.flags
inline constexpr uint32_t kBlkFlagUnmap = 1;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kBlkIdBytes = 20;  // VIRTIO_BLK_ID_BYTES

// The device's request limits, advertised in its config space. A request beyond them is refused
// with IOERR rather than split.
inline constexpr uint16_t kBlkQueueSize = 256;
// Data segments per request: the rest of a full-length chain after the header and the status.
inline constexpr uint32_t kBlkSegMax = kBlkQueueSize - 2;
// Bytes per data segment: Linux never sends more than a page per segment unless told it may;
// 1 MiB lets it merge contiguous pages while keeping one request's iovec bounded.
inline constexpr uint32_t kBlkSizeMax = 1 << 20;
// One fallocate per discard; 2 GiB bounds the time one request keeps the file system busy.
inline constexpr uint32_t kBlkMaxDiscardSectors = 1 << 22;
// Write zeroes may fall back to writing a zeroed buffer of kBlkZeroChunk bytes, repeated in one
// pwritev of kBlkZeroChunks entries, so its limit is what such a write covers: 16 MiB.
inline constexpr uint64_t kBlkZeroChunk = 64 * 1024;
inline constexpr uint64_t kBlkZeroChunks = 256;
inline constexpr uint32_t kBlkMaxWriteZeroesSectors = kBlkZeroChunks * kBlkZeroChunk / kSectorSize;

// What the request parser needs to know about the disk and the negotiation.
struct BlockLimits {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool discard = false;       // VIRTIO_BLK_F_DISCARD negotiated
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES negotiated
};

// Why a request is not carried out as asked: one kind per failure. block_error_policy() maps each,
// in one place, to what the driver is told and how loudly vmm logs it.
enum class BlockError {
  kNoStatusByte,         // no writable byte for the status: returned with nothing written
  kShortHeader,          // fewer than 16 readable bytes for the header
  kUnsupportedType,      // a request type we do not implement
  kNotNegotiated,        // discard or write zeroes the driver did not negotiate
  kReadOnly,             // a modifying request on a read-only disk
  kPartialSector,        // a data length that is not a multiple of 512
  kBeyondCapacity,       // sectors past the end of the disk
  kSegmentTooLarge,      // a data segment above size_max
  kTooManySegments,      // more data segments than seg_max
  kBufferOutsideMemory,  // a data buffer outside guest memory
  kBadSegmentCount,      // discard or write zeroes with other than one 16-byte segment
  kUnreadableSegment,    // that segment could not be read
  kUnknownFlags,         // segment flags other than UNMAP
  kDiscardWithUnmap,     // UNMAP is reserved for write zeroes
  kTooManySectors,       // a discard or write zeroes above its maximum
  kHostIo,               // the image's I/O failed on the host
  kShortTransfer,        // the host moved fewer bytes than asked
};

struct BlockErrorPolicy {
  bool has_status;  // false: the chain goes back with nothing written (there is no status byte)
  uint8_t status;   // IOERR or UNSUPP
  // The first of a kind is logged at this level, the rest at debug: the guest decides how many
  // there are. warn: the driver broke the spec or the host failed; debug: a legal request that
  // we refuse (a probe for an optional feature).
  spdlog::level::level_enum level;
};
BlockErrorPolicy block_error_policy(BlockError error);
const char* block_error_name(BlockError error);

// A descriptor chain read as a virtio-blk request: header {le32 type, le32 reserved, le64 sector}
// in the readable part, then the data, then the status byte, the last byte of the writable part.
struct BlockRequest {
  enum class Kind {
    kRead,         // preadv `length` bytes at `offset` into `data`
    kWrite,        // pwritev `length` bytes at `offset` from `data`
    kFlush,        // fdatasync
    kGetId,        // the serial into the writable part, up to status_offset bytes
    kDiscard,      // [offset, offset+length) may be deallocated
    kWriteZeroes,  // [offset, offset+length) must read back as zeros; `unmap`: may deallocate
    kRefused,      // not carried out: `error` says why, block_error_policy() what to answer
  };

  Kind kind = Kind::kRefused;
  BlockError error = BlockError::kNoStatusByte;  // kRefused only
  std::string detail;                            // kRefused only: the numbers, for the log
  uint64_t offset = 0;                           // bytes into the image
  uint64_t length = 0;                           // bytes
  bool unmap = false;
  std::vector<iovec> data;     // kRead and kWrite: the guest's data buffers, in order
  uint32_t status_offset = 0;  // of the status byte within the writable part
};

// Parses and validates `chain` against `limits`; everything the guest supplied is checked here,
// so the device only executes what comes out. Data buffers are host views of guest memory
// (GuestMemory::slice), valid as long as `memory`.
BlockRequest parse_block_request(const GuestMemory& memory, const DescriptorChain& chain,
                                 const BlockLimits& limits);

}  // namespace vmm::devices::virtio
