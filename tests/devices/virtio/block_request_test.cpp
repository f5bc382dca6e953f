#include "devices/virtio/block_request.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <vector>

#include "devices/virtio/queue.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using testing::Driver;
using Kind = BlockRequest::Kind;

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kDescTable = 0x1000;
constexpr uint64_t kAvailRing = 0x3000;
constexpr uint64_t kUsedRing = 0x4000;
constexpr uint64_t kHeader = 0x10000;
constexpr uint64_t kStatus = 0x20000;
constexpr uint64_t kData = 0x100000;
constexpr uint16_t kQueueSize = 256;

class BlockRequestTest : public ::testing::Test {
 protected:
  static QueueConfig config() {
    return QueueConfig{.size = kQueueSize,
                       .desc_table = kDescTable,
                       .avail_ring = kAvailRing,
                       .used_ring = kUsedRing,
                       .event_idx = false,
                       .indirect_desc = false};
  }

  void SetUp() override { queue.activate(config()); }

  void header(uint32_t type, uint64_t sector) {
    ASSERT_TRUE(memory.write_obj(kHeader, type));
    ASSERT_TRUE(memory.write_obj(kHeader + 8, sector));
  }
  void segment(uint64_t sector, uint32_t sectors, uint32_t flags) {
    ASSERT_TRUE(memory.write_obj(kData, sector));
    ASSERT_TRUE(memory.write_obj(kData + 8, sectors));
    ASSERT_TRUE(memory.write_obj(kData + 12, flags));
  }

  // Publishes descriptors 0..n-1 as one chain ({addr, len, writable}) and parses it.
  BlockRequest parse(const std::vector<Buffer>& buffers) {
    for (size_t i = 0; i < buffers.size(); ++i) {
      const bool last = i + 1 == buffers.size();
      driver.desc(static_cast<uint16_t>(i), buffers[i].addr, buffers[i].len,
                  (buffers[i].writable ? kVirtqDescFWrite : 0) | (last ? 0 : kVirtqDescFNext),
                  static_cast<uint16_t>(i + 1));
    }
    driver.publish(0);
    auto chain = queue.pop();
    if (!chain) throw std::runtime_error("no chain: " + queue.broken_reason());
    BlockRequest request = parse_block_request(memory, *chain, limits);
    queue.add_used(std::move(*chain), 0);
    return request;
  }

  void expect_refused(const BlockRequest& request, BlockError error) {
    EXPECT_EQ(request.kind, Kind::kRefused);
    EXPECT_EQ(request.error, error) << block_error_name(request.error) << ": " << request.detail;
  }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  SplitQueue queue{memory, kQueueSize};
  Driver driver{memory, config()};
  BlockLimits limits{.capacity_sectors = 1 << 20, .discard = true, .write_zeroes = true};
};

TEST_F(BlockRequestTest, ReadDataIsTheWritablePartBeforeTheStatus) {
  header(kBlkTypeIn, 3);
  // The last buffer holds 512 bytes of data and the status byte.
  const auto request =
      parse({{kHeader, 16, false}, {kData, 1024, true}, {kData + 0x1000, 513, true}});
  ASSERT_EQ(request.kind, Kind::kRead);
  EXPECT_EQ(request.offset, 3u * 512);
  EXPECT_EQ(request.length, 1536u);
  EXPECT_EQ(request.status_offset, 1536u);
  ASSERT_EQ(request.data.size(), 2u);
  EXPECT_EQ(request.data[0].iov_base, ram.data() + kData);
  EXPECT_EQ(request.data[0].iov_len, 1024u);
  EXPECT_EQ(request.data[1].iov_base, ram.data() + kData + 0x1000);
  EXPECT_EQ(request.data[1].iov_len, 512u);
}

TEST_F(BlockRequestTest, WriteDataFollowsTheHeaderEvenInItsDescriptor) {
  header(kBlkTypeOut, 0);
  const auto request = parse({{kHeader, 16 + 512, false}, {kData, 512, false}, {kStatus, 1, true}});
  ASSERT_EQ(request.kind, Kind::kWrite);
  EXPECT_EQ(request.length, 1024u);
  EXPECT_EQ(request.status_offset, 0u);
  ASSERT_EQ(request.data.size(), 2u);
  EXPECT_EQ(request.data[0].iov_base, ram.data() + kHeader + 16);
  EXPECT_EQ(request.data[0].iov_len, 512u);
}

TEST_F(BlockRequestTest, HeaderSplitAcrossDescriptors) {
  header(kBlkTypeIn, 9);
  const auto request = parse(
      {{kHeader, 4, false}, {kHeader + 4, 12, false}, {kData, 512, true}, {kStatus, 1, true}});
  ASSERT_EQ(request.kind, Kind::kRead);
  EXPECT_EQ(request.offset, 9u * 512);
}

TEST_F(BlockRequestTest, MalformedWithoutAWritableByte) {
  header(kBlkTypeFlush, 0);
  expect_refused(parse({{kHeader, 16, false}}), BlockError::kNoStatusByte);
  EXPECT_FALSE(block_error_policy(BlockError::kNoStatusByte).has_status);
}

TEST_F(BlockRequestTest, SegmentLimits) {
  header(kBlkTypeIn, 0);
  // One segment larger than size_max.
  expect_refused(
      parse({{kHeader, 16, false}, {kData, kBlkSizeMax + 512, true}, {kStatus, 1, true}}),
      BlockError::kSegmentTooLarge);
  // Exactly size_max is fine.
  EXPECT_EQ(parse({{kHeader, 16, false}, {kData, kBlkSizeMax, true}, {kStatus, 1, true}}).kind,
            Kind::kRead);
}

TEST_F(BlockRequestTest, RangeChecksDoNotOverflow) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  for (uint64_t sector : {max, max - 1, max / 512, max / 512 + 1, uint64_t{1} << 20}) {
    header(kBlkTypeIn, sector);
    expect_refused(parse({{kHeader, 16, false}, {kData, 512, true}, {kStatus, 1, true}}),
                   BlockError::kBeyondCapacity);
  }
  header(kBlkTypeIn, (1 << 20) - 2);
  EXPECT_EQ(parse({{kHeader, 16, false}, {kData, 1024, true}, {kStatus, 1, true}}).kind,
            Kind::kRead);
  expect_refused(parse({{kHeader, 16, false}, {kData, 1536, true}, {kStatus, 1, true}}),
                 BlockError::kBeyondCapacity);
}

TEST_F(BlockRequestTest, DiscardAndWriteZeroesSegments) {
  header(kBlkTypeWriteZeroes, 0);
  segment(8, 16, kBlkFlagUnmap);
  auto request = parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  ASSERT_EQ(request.kind, Kind::kWriteZeroes);
  EXPECT_EQ(request.offset, 8u * 512);
  EXPECT_EQ(request.length, 16u * 512);
  EXPECT_TRUE(request.unmap);

  // Two segments: more than max_write_zeroes_seg.
  expect_refused(parse({{kHeader, 16, false}, {kData, 32, false}, {kStatus, 1, true}}),
                 BlockError::kBadSegmentCount);
  segment(0, kBlkMaxWriteZeroesSectors + 1, 0);
  expect_refused(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}),
                 BlockError::kTooManySectors);
  segment(0, 1, 0x80);
  expect_refused(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}),
                 BlockError::kUnknownFlags);

  header(kBlkTypeDiscard, 0);
  segment(0, 1, kBlkFlagUnmap);
  expect_refused(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}),
                 BlockError::kDiscardWithUnmap);
  limits.capacity_sectors = uint64_t{1} << 32;
  segment(0, kBlkMaxDiscardSectors, 0);
  EXPECT_EQ(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}).kind,
            Kind::kDiscard);
  expect_refused(parse({{kHeader, 16, false}, {kData, 15, false}, {kStatus, 1, true}}),
                 BlockError::kBadSegmentCount);
  limits.discard = false;
  expect_refused(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}),
                 BlockError::kNotNegotiated);
}

TEST_F(BlockRequestTest, ReadOnlyRefusesEveryModification) {
  limits.read_only = true;
  for (uint32_t type : {kBlkTypeOut, kBlkTypeDiscard, kBlkTypeWriteZeroes}) {
    header(type, 0);
    segment(0, 1, 0);
    expect_refused(parse({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}}),
                   BlockError::kReadOnly);
  }
  header(kBlkTypeFlush, 0);
  EXPECT_EQ(parse({{kHeader, 16, false}, {kStatus, 1, true}}).kind, Kind::kFlush);
}

TEST_F(BlockRequestTest, GetIdRoomIsTheWritablePartBeforeTheStatus) {
  header(kBlkTypeGetId, 0);
  const auto request = parse({{kHeader, 16, false}, {kData, 20, true}, {kStatus, 1, true}});
  ASSERT_EQ(request.kind, Kind::kGetId);
  EXPECT_EQ(request.status_offset, 20u);
}

TEST_F(BlockRequestTest, ShortHeadersPartialSectorsAndUnknownTypesAreTheirOwnKinds) {
  header(kBlkTypeIn, 0);
  expect_refused(parse({{kHeader, 12, false}, {kStatus, 1, true}}), BlockError::kShortHeader);
  expect_refused(parse({{kHeader, 16, false}, {kData, 100, true}, {kStatus, 1, true}}),
                 BlockError::kPartialSector);
  header(0x7f, 0);
  expect_refused(parse({{kHeader, 16, false}, {kStatus, 1, true}}), BlockError::kUnsupportedType);
}

// The one place that says what the driver is told: UNSUPP for what we do not offer or it did not
// negotiate, IOERR for the rest; only a chain without a status byte goes back without one.
TEST(BlockErrorPolicy, EachKindMapsToItsStatusAndLevel) {
  using enum BlockError;
  for (BlockError error : {kUnsupportedType, kNotNegotiated, kUnknownFlags, kDiscardWithUnmap}) {
    EXPECT_EQ(block_error_policy(error).status, kBlkStatusUnsupp) << block_error_name(error);
    EXPECT_EQ(block_error_policy(error).level, spdlog::level::debug) << block_error_name(error);
  }
  for (BlockError error :
       {kShortHeader, kReadOnly, kPartialSector, kBeyondCapacity, kSegmentTooLarge,
        kTooManySegments, kBufferOutsideMemory, kBadSegmentCount, kUnreadableSegment,
        kTooManySectors, kHostIo, kShortTransfer}) {
    EXPECT_TRUE(block_error_policy(error).has_status) << block_error_name(error);
    EXPECT_EQ(block_error_policy(error).status, kBlkStatusIoErr) << block_error_name(error);
  }
  // The driver breaking the spec and the host failing are worth a warning; a legal request we
  // refuse is not.
  EXPECT_EQ(block_error_policy(kShortHeader).level, spdlog::level::warn);
  EXPECT_EQ(block_error_policy(kHostIo).level, spdlog::level::warn);
  EXPECT_EQ(block_error_policy(kBeyondCapacity).level, spdlog::level::debug);
}

}  // namespace
}  // namespace vmm::devices::virtio
