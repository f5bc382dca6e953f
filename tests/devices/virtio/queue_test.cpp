#include "devices/virtio/queue.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "base/util/error.hpp"
#include "tests/devices/virtio/device_state.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using testing::Driver;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 1 << 20;
constexpr uint64_t kDescTable = 0x1000;
constexpr uint64_t kAvailRing = 0x40000;
constexpr uint64_t kUsedRing = 0x50000;
constexpr uint64_t kData = 0x80000;
constexpr uint16_t kMaxSize = 16;

std::vector<Buffer> buffers(const DescriptorChain& chain) {
  return {chain.begin(), chain.end()};
}

class SplitQueueTest : public ::testing::Test {
 protected:
  static QueueConfig default_config() {
    return QueueConfig{.size = kMaxSize,
                       .desc_table = kDescTable,
                       .avail_ring = kAvailRing,
                       .used_ring = kUsedRing,
                       .event_idx = false,
                       .indirect_desc = true};
  }

  void activate(const QueueConfig& config) {
    queue.activate(config);
    driver = Driver(memory, config);
  }

  // Pops a chain that must be there.
  DescriptorChain pop_one() { return pop_from(queue); }
  static DescriptorChain pop_from(SplitQueue& from) {
    auto chain = from.pop();
    if (!chain) throw std::runtime_error("no chain to pop: " + from.broken_reason());
    return std::move(*chain);
  }

  void expect_broken(const std::string& reason) {
    EXPECT_FALSE(queue.pop().has_value());
    EXPECT_TRUE(queue.broken());
    EXPECT_THAT(queue.broken_reason(), HasSubstr(reason));
    // Sticky: a well-formed chain made available afterwards is not popped either.
    driver.desc(0, kData, 8);
    driver.publish(0);
    EXPECT_FALSE(queue.pop().has_value());
    EXPECT_TRUE(queue.broken());
  }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  SplitQueue queue{memory, kMaxSize};
  Driver driver{memory, default_config()};
};

TEST_F(SplitQueueTest, ActivateChecksConfiguration) {
  auto rejects = [&](QueueConfig config, const std::string& reason) {
    try {
      queue.activate(config);
      ADD_FAILURE() << "accepted, expected: " << reason;
    } catch (const Error& error) {
      EXPECT_THAT(error.what(), HasSubstr(reason));
    }
    EXPECT_FALSE(queue.ready());
  };
  auto with = [](auto change) {
    QueueConfig config = default_config();
    change(config);
    return config;
  };
  rejects(with([](QueueConfig& c) { c.size = 0; }), "size 0 is not a power of two");
  rejects(with([](QueueConfig& c) { c.size = 12; }), "size 12");
  rejects(with([](QueueConfig& c) { c.size = 32; }), "size 32");  // above the device's max
  rejects(with([](QueueConfig& c) { c.desc_table += 8; }), "descriptor table at 0x1008 is not 16");
  rejects(with([](QueueConfig& c) { c.avail_ring += 1; }), "available ring at 0x40001 is not 2");
  rejects(with([](QueueConfig& c) { c.used_ring += 2; }), "used ring at 0x50002 is not 4");
  rejects(with([](QueueConfig& c) { c.desc_table = kRamSize - 0x80; }),
          "descriptor table at 0xfff80 (256 bytes) is outside");
  // The used ring needs 6 + 8 * 16 bytes: the trailing avail_event must fit too.
  rejects(with([](QueueConfig& c) { c.used_ring = kRamSize - 132; }), "outside guest memory");
  rejects(with([](QueueConfig& c) { c.avail_ring = ~uint64_t{0} - 1; }), "outside guest memory");

  queue.activate(with([](QueueConfig& c) { c.used_ring = kRamSize - 136; }));
  EXPECT_TRUE(queue.ready());
  EXPECT_THROW(SplitQueue(memory, 24), Error);
}

TEST_F(SplitQueueTest, NotReadyQueuePopsNothing) {
  driver.desc(0, kData, 8);
  driver.publish(0);
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_FALSE(queue.broken());
}

TEST_F(SplitQueueTest, SingleDescriptorRoundTrip) {
  activate(default_config());
  EXPECT_FALSE(queue.pop().has_value());
  driver.desc(3, kData, 64);
  driver.publish(3);
  DescriptorChain chain = pop_one();
  EXPECT_EQ(chain.head(), 3);
  EXPECT_THAT(buffers(chain), ElementsAre(Buffer{kData, 64, false}));
  EXPECT_EQ(chain.readable_bytes(), 64u);
  EXPECT_EQ(chain.writable_bytes(), 0u);
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_FALSE(queue.broken());

  queue.add_used(std::move(chain), 0);
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used(0).id, 3u);
  EXPECT_EQ(driver.used(0).len, 0u);
}

TEST_F(SplitQueueTest, DebugStateSaysWhereTheRingsStand) {
  EXPECT_EQ(queue.debug_state(), "not ready");
  activate(default_config());
  driver.desc(0, kData, 64);
  driver.publish(0);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  EXPECT_EQ(queue.debug_state(), "size 16, avail idx 2 (popped 1), used idx 0");
  queue.add_used(std::move(chain), 0);
  EXPECT_EQ(queue.debug_state(), "size 16, avail idx 2 (popped 1), used idx 1");
  driver.set_avail_idx(100);
  EXPECT_FALSE(queue.pop());
  EXPECT_THAT(queue.debug_state(), HasSubstr(", broken: avail->idx moved"));
}

TEST_F(SplitQueueTest, MultiDescriptorChainReadableThenWritable) {
  activate(default_config());
  driver.desc(0, kData, 16, kVirtqDescFNext, 5);
  driver.desc(5, kData + 0x100, 4, kVirtqDescFNext, 2);
  driver.desc(2, kData + 0x200, 32, kVirtqDescFWrite | kVirtqDescFNext, 7);
  driver.desc(7, kData + 0x300, 1, kVirtqDescFWrite);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  EXPECT_THAT(buffers(chain),
              ElementsAre(Buffer{kData, 16, false}, Buffer{kData + 0x100, 4, false},
                          Buffer{kData + 0x200, 32, true}, Buffer{kData + 0x300, 1, true}));
  EXPECT_EQ(chain.readable_bytes(), 20u);
  EXPECT_EQ(chain.writable_bytes(), 33u);

  // The device reports more than the chain can hold: the used ring gets the writable size.
  queue.add_used(std::move(chain), 1000);
  EXPECT_EQ(driver.used(0).id, 0u);
  EXPECT_EQ(driver.used(0).len, 33u);
}

TEST_F(SplitQueueTest, CopiesAcrossDescriptorBoundaries) {
  activate(default_config());
  for (int i = 0; i < 12; ++i) ram[kData + i] = static_cast<uint8_t>(i + 1);
  driver.desc(0, kData, 5, kVirtqDescFNext, 1);
  driver.desc(1, kData + 5, 0, kVirtqDescFNext, 2);  // zero-length: contributes nothing
  driver.desc(2, kData + 5, 7, kVirtqDescFNext, 3);
  driver.desc(3, kData + 0x100, 3, kVirtqDescFWrite | kVirtqDescFNext, 4);
  driver.desc(4, kData + 0x200, 6, kVirtqDescFWrite);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  EXPECT_EQ(chain.buffers().size(), 4u);

  std::vector<uint8_t> out(20, 0xee);
  EXPECT_EQ(chain.read(0, out), 12u);
  EXPECT_EQ(out[0], 1);
  EXPECT_EQ(out[11], 12);
  EXPECT_EQ(out[12], 0xee);  // bounded by the readable part
  std::vector<uint8_t> middle(4);
  EXPECT_EQ(chain.read(3, middle), 4u);
  EXPECT_THAT(middle, ElementsAre(4, 5, 6, 7));
  EXPECT_EQ(chain.read(12, middle), 0u);

  const std::vector<uint8_t> in = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  EXPECT_EQ(chain.write(1, in), 8u);  // 9 writable bytes, from offset 1
  EXPECT_EQ(ram[kData + 0x100], 0);
  EXPECT_EQ(ram[kData + 0x101], 10);
  EXPECT_EQ(ram[kData + 0x102], 11);
  EXPECT_EQ(ram[kData + 0x200], 12);
  EXPECT_EQ(ram[kData + 0x205], 17);
  EXPECT_EQ(ram[kData + 0x206], 0);  // nothing past the last writable buffer
  // Readable buffers are never written.
  EXPECT_EQ(ram[kData + 4], 5);
  queue.add_used(std::move(chain), 9);
}

TEST_F(SplitQueueTest, ZeroLengthDescriptorAnywhereIsAccepted) {
  activate(default_config());
  driver.desc(0, ~uint64_t{0}, 0, kVirtqDescFNext, 1);
  driver.desc(1, kData, 8);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  EXPECT_THAT(buffers(chain), ElementsAre(Buffer{kData, 8, false}));
  queue.add_used(std::move(chain), 0);
}

TEST_F(SplitQueueTest, IndirectTable) {
  activate(default_config());
  const uint64_t table = kData + 0x1000;
  driver.desc_at(table, 0, kData, 16, kVirtqDescFNext, 2);
  driver.desc_at(table, 2, kData + 0x100, 8, kVirtqDescFWrite | kVirtqDescFNext, 1);
  driver.desc_at(table, 1, kData + 0x200, 8, kVirtqDescFWrite);
  // A direct header descriptor, then the indirect one (its WRITE flag is ignored).
  driver.desc(4, kData + 0x300, 2, kVirtqDescFNext, 9);
  driver.desc(9, table, 3 * 16, kVirtqDescFIndirect | kVirtqDescFWrite);
  driver.publish(4);
  DescriptorChain chain = pop_one();
  EXPECT_EQ(chain.head(), 4);
  EXPECT_THAT(buffers(chain),
              ElementsAre(Buffer{kData + 0x300, 2, false}, Buffer{kData, 16, false},
                          Buffer{kData + 0x100, 8, true}, Buffer{kData + 0x200, 8, true}));
  queue.add_used(std::move(chain), 16);
  EXPECT_EQ(driver.used(0).id, 4u);
  EXPECT_EQ(driver.used(0).len, 16u);
}

TEST_F(SplitQueueTest, ChainIsASnapshot) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  driver.desc(0, ~uint64_t{0} - 4, 8);  // the guest rewrites the descriptor after the pop
  EXPECT_THAT(buffers(chain), ElementsAre(Buffer{kData, 8, false}));
  queue.add_used(std::move(chain), 0);
}

TEST_F(SplitQueueTest, NotificationWithoutEventIdx) {
  activate(default_config());
  EXPECT_FALSE(queue.needs_notification());  // nothing used yet
  driver.desc(0, kData, 8);
  driver.publish(0);
  driver.publish(0);
  queue.add_used(pop_one(), 0);
  EXPECT_TRUE(queue.needs_notification());
  EXPECT_FALSE(queue.needs_notification());  // already notified for that entry

  driver.set_avail_flags(kVirtqAvailFNoInterrupt);
  queue.add_used(pop_one(), 0);
  EXPECT_FALSE(queue.needs_notification());
}

TEST_F(SplitQueueTest, NotificationWithEventIdx) {
  QueueConfig config = default_config();
  config.event_idx = true;
  activate(config);
  driver.desc(0, kData, 8);
  for (int i = 0; i < 6; ++i) driver.publish(0);

  // used_event 0: the driver wants to hear about the first entry (used idx 0 -> 1).
  queue.add_used(pop_one(), 0);
  EXPECT_TRUE(queue.needs_notification());

  // used_event 3: nothing until the entry at index 3 is used (idx 3 -> 4); flags are ignored.
  driver.set_used_event(3);
  driver.set_avail_flags(kVirtqAvailFNoInterrupt);
  queue.add_used(pop_one(), 0);  // idx 2
  EXPECT_FALSE(queue.needs_notification());
  queue.add_used(pop_one(), 0);  // idx 3
  EXPECT_FALSE(queue.needs_notification());
  queue.add_used(pop_one(), 0);  // idx 4: crosses used_event
  queue.add_used(pop_one(), 0);  // idx 5
  EXPECT_TRUE(queue.needs_notification());
  queue.add_used(pop_one(), 0);  // idx 6: used_event 3 is behind
  EXPECT_FALSE(queue.needs_notification());
}

TEST_F(SplitQueueTest, FilledEntriesAppearTogetherWhenPublished) {
  QueueConfig config = default_config();
  config.event_idx = true;
  activate(config);
  driver.desc(0, kData, 8, kVirtqDescFWrite);
  driver.desc(1, kData + 8, 8, kVirtqDescFWrite);
  driver.publish(0);
  driver.publish(1);
  queue.fill_used(pop_one(), 8);
  queue.fill_used(pop_one(), 3);
  // Written, not yet visible: the driver must not find the first without the second.
  EXPECT_EQ(driver.used_idx(), 0);
  EXPECT_EQ(driver.used(0).id, 0u);
  EXPECT_EQ(driver.used(1).len, 3u);
  EXPECT_FALSE(queue.needs_notification());
  queue.publish_used();
  EXPECT_EQ(driver.used_idx(), 2);
  EXPECT_TRUE(queue.needs_notification());  // both count: used_event 0 lies in [0, 2)
  queue.publish_used();                     // nothing new
  EXPECT_EQ(driver.used_idx(), 2);
  EXPECT_FALSE(queue.needs_notification());
}

TEST_F(SplitQueueTest, EventIdxPublishesAvailEventWhenDrained) {
  QueueConfig config = default_config();
  config.event_idx = true;
  activate(config);
  driver.desc(0, kData, 8);
  for (int i = 0; i < 3; ++i) driver.publish(0);
  std::vector<DescriptorChain> chains;
  chains.reserve(3);
  for (int i = 0; i < 3; ++i) chains.push_back(pop_one());
  EXPECT_EQ(driver.avail_event(), 0);  // not drained yet: no update while busy
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_EQ(driver.avail_event(), 3);  // notify me when entry 3 becomes available
  for (auto& chain : chains) queue.add_used(std::move(chain), 0);

  driver.publish(0);
  queue.add_used(pop_one(), 0);
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_EQ(driver.avail_event(), 4);
}

TEST_F(SplitQueueTest, IndicesWrapAround) {
  QueueConfig config = default_config();
  config.event_idx = true;
  activate(config);
  driver.desc(0, kData, 8);
  driver.desc(1, kData + 8, 8, kVirtqDescFWrite);
  // Run the free-running indices up to just below 2^16, as a long-lived driver would.
  for (uint32_t i = 0; i < 0xfffa; ++i) {
    driver.publish(0);
    queue.add_used(pop_one(), 0);
  }
  EXPECT_EQ(driver.used_idx(), 0xfffa);
  EXPECT_TRUE(queue.needs_notification());

  // Interrupt wanted when used idx goes 0x0001 -> 0x0002, across the wrap.
  driver.set_used_event(0x0001);
  for (uint32_t i = 0; i < 12; ++i) {
    const uint16_t head = i % 2;
    driver.publish(head);
    DescriptorChain chain = pop_one();
    EXPECT_EQ(chain.head(), head);
    queue.add_used(std::move(chain), head);
    const uint16_t used = static_cast<uint16_t>(0xfffa + i);
    EXPECT_EQ(driver.used(used).id, head);
    EXPECT_EQ(driver.used_idx(), static_cast<uint16_t>(used + 1));
    EXPECT_EQ(queue.needs_notification(), used == 0x0001) << "used entry " << used;
  }
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_EQ(driver.avail_event(), 0x0006);
  EXPECT_FALSE(queue.broken());

  // A batch across the wrap: several entries added, one check.
  driver.set_used_event(0x0008);
  for (int i = 0; i < 4; ++i) driver.publish(0);
  for (int i = 0; i < 4; ++i) queue.add_used(pop_one(), 0);  // used idx 6 -> 10
  EXPECT_TRUE(queue.needs_notification());
}

TEST_F(SplitQueueTest, AvailIdxJumpingPastQueueSizeBreaks) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  queue.add_used(pop_one(), 0);
  driver.set_avail_idx(1 + kMaxSize + 1);
  expect_broken("avail->idx moved from 1 to 18");
}

TEST_F(SplitQueueTest, AvailIdxGoingBackwardsBreaks) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  queue.add_used(pop_one(), 0);
  driver.set_avail_idx(0);  // 0 - 1 wraps to 0xffff pending entries
  expect_broken("more than the queue size");
}

TEST_F(SplitQueueTest, FullQueueIsNotBroken) {
  activate(default_config());
  driver.desc(0, kData, 8);
  std::vector<DescriptorChain> chains;
  chains.reserve(kMaxSize);
  for (int i = 0; i < kMaxSize; ++i) driver.publish(0);
  for (int i = 0; i < kMaxSize; ++i) chains.push_back(pop_one());
  EXPECT_FALSE(queue.pop().has_value());
  EXPECT_FALSE(queue.broken());
  for (auto& chain : chains) queue.add_used(std::move(chain), 0);
  EXPECT_EQ(driver.used_idx(), kMaxSize);
}

// Each hostile chain below breaks the queue, sticky, without touching memory outside the RAM.
TEST_F(SplitQueueTest, HeadIndexOutOfRange) {
  activate(default_config());
  driver.publish(kMaxSize);
  expect_broken("descriptor 16: index >= queue size 16");
}

TEST_F(SplitQueueTest, NextIndexOutOfRange) {
  activate(default_config());
  driver.desc(0, kData, 8, kVirtqDescFNext, 0xffff);
  driver.publish(0);
  expect_broken("next index 65535 >= table size 16");
}

TEST_F(SplitQueueTest, DirectLoop) {
  activate(default_config());
  driver.desc(0, kData, 8, kVirtqDescFNext, 1);
  driver.desc(1, kData, 8, kVirtqDescFNext, 2);
  driver.desc(2, kData, 8, kVirtqDescFNext, 1);
  driver.publish(0);
  expect_broken("loops");
}

TEST_F(SplitQueueTest, SelfLoopOfZeroLengthDescriptors) {
  activate(default_config());
  driver.desc(0, 0, 0, kVirtqDescFNext, 0);
  driver.publish(0);
  expect_broken("loops");
}

TEST_F(SplitQueueTest, BufferOutsideRam) {
  activate(default_config());
  driver.desc(0, kRamSize - 4, 8);
  driver.publish(0);
  expect_broken("buffer at 0xffffc (8 bytes) is outside guest memory");
}

TEST_F(SplitQueueTest, BufferAddressPlusLengthOverflows) {
  activate(default_config());
  driver.desc(0, kData, 8, kVirtqDescFNext, 1);
  driver.desc(1, ~uint64_t{0} - 2, 8, kVirtqDescFWrite);
  driver.publish(0);
  expect_broken("descriptor 1: buffer 0xfffffffffffffffd+0x8 overflows");
}

TEST_F(SplitQueueTest, ReadableAfterWritable) {
  activate(default_config());
  driver.desc(0, kData, 8, kVirtqDescFWrite | kVirtqDescFNext, 1);
  driver.desc(1, kData, 8);
  driver.publish(0);
  expect_broken("device-readable buffer after a writable one");
}

TEST_F(SplitQueueTest, ReadableAfterWritableAcrossIndirect) {
  activate(default_config());
  const uint64_t table = kData + 0x1000;
  driver.desc_at(table, 0, kData, 8);
  driver.desc(0, kData, 8, kVirtqDescFWrite | kVirtqDescFNext, 1);
  driver.desc(1, table, 16, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("indirect entry 0: device-readable buffer after a writable one");
}

TEST_F(SplitQueueTest, TotalLengthOverflowingU32) {
  // 4096 descriptors of 1 MiB (the same RAM, which is legal) add up to 4 GiB, one byte too many.
  constexpr uint16_t kSize = 8192;
  SplitQueue big(memory, kSize);
  QueueConfig config = default_config();
  config.size = kSize;
  config.avail_ring = 0x30000;
  config.used_ring = 0x40000;
  big.activate(config);
  Driver big_driver(memory, config);
  for (uint16_t i = 0; i < 4096; ++i) big_driver.desc(i, 0, kRamSize, kVirtqDescFNext, i + 1);
  big_driver.publish(0);
  EXPECT_FALSE(big.pop().has_value());
  EXPECT_TRUE(big.broken());
  EXPECT_THAT(big.broken_reason(), HasSubstr("descriptor 4095: chain is longer than 4 GiB"));
}

TEST_F(SplitQueueTest, IndirectNotNegotiated) {
  QueueConfig config = default_config();
  config.indirect_desc = false;
  activate(config);
  driver.desc_at(kData, 0, kData + 0x100, 8);
  driver.desc(0, kData, 16, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("INDIRECT without VIRTIO_F_RING_INDIRECT_DESC");
}

TEST_F(SplitQueueTest, IndirectWithNext) {
  activate(default_config());
  driver.desc_at(kData, 0, kData + 0x100, 8);
  driver.desc(0, kData, 16, kVirtqDescFIndirect | kVirtqDescFNext, 1);
  driver.desc(1, kData, 8);
  driver.publish(0);
  expect_broken("INDIRECT together with NEXT");
}

TEST_F(SplitQueueTest, NestedIndirect) {
  activate(default_config());
  driver.desc_at(kData, 0, kData + 0x100, 8, kVirtqDescFNext, 1);
  driver.desc_at(kData, 1, kData, 32, kVirtqDescFIndirect);
  driver.desc(0, kData, 32, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("indirect entry 1: nested indirect table");
}

TEST_F(SplitQueueTest, IndirectTableBadLength) {
  for (uint32_t len : {0u, 24u}) {
    SCOPED_TRACE(len);
    queue.reset();
    activate(default_config());
    driver.desc(0, kData, len, kVirtqDescFIndirect);
    driver.publish(0);
    expect_broken("is not a non-zero multiple of 16");
  }
}

TEST_F(SplitQueueTest, IndirectTableOutsideRam) {
  activate(default_config());
  driver.desc(0, kRamSize - 16, 32, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("indirect table at 0xffff0 (32 bytes) is outside guest memory");
}

TEST_F(SplitQueueTest, IndirectLoopAndNextOutOfRange) {
  activate(default_config());
  driver.desc_at(kData, 0, kData + 0x100, 8, kVirtqDescFNext, 1);
  driver.desc_at(kData, 1, kData + 0x100, 8, kVirtqDescFNext, 0);
  driver.desc(0, kData, 32, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("loops");

  queue.reset();
  activate(default_config());
  driver.desc(0, kData, 32, kVirtqDescFIndirect);
  driver.desc_at(kData, 1, kData + 0x100, 8, kVirtqDescFNext, 2);  // a 2-entry table
  driver.publish(0);
  expect_broken("indirect entry 1: next index 2 >= table size 2");
}

TEST_F(SplitQueueTest, IndirectChainLongerThanQueueSize) {
  QueueConfig config = default_config();
  config.size = 4;
  activate(config);
  for (uint16_t i = 0; i < 5; ++i)
    driver.desc_at(kData, i, kData + 0x100, 8, kVirtqDescFNext, i + 1);
  driver.desc_at(kData, 4, kData + 0x100, 8);
  driver.desc(0, kData, 5 * 16, kVirtqDescFIndirect);
  driver.publish(0);
  expect_broken("chain longer than the queue size 4");
}

TEST_F(SplitQueueTest, BrokenQueueIgnoresCompletionsAndNotifications) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  driver.publish(kMaxSize);
  EXPECT_FALSE(queue.pop().has_value());
  ASSERT_TRUE(queue.broken());
  queue.add_used(std::move(chain), 0);
  EXPECT_EQ(driver.used_idx(), 0);
  EXPECT_FALSE(queue.needs_notification());
}

TEST_F(SplitQueueTest, ResetRestartsTheQueue) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  DescriptorChain stale = pop_one();
  driver.publish(kMaxSize);
  EXPECT_FALSE(queue.pop().has_value());
  ASSERT_TRUE(queue.broken());

  queue.reset();
  EXPECT_FALSE(queue.ready());
  EXPECT_FALSE(queue.broken());
  EXPECT_EQ(queue.broken_reason(), "");
  EXPECT_FALSE(queue.pop().has_value());

  // The driver re-initialises its rings and starts again from index 0.
  std::fill(ram.begin(), ram.end(), 0);
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  queue.add_used(std::move(stale), 0);  // from before the reset: ignored
  EXPECT_EQ(driver.used_idx(), 0);
  queue.add_used(std::move(chain), 0);
  EXPECT_EQ(driver.used_idx(), 1);
}

TEST_F(SplitQueueTest, ChainIsReturnedOnlyOnceAndOnlyToItsQueue) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  driver.publish(0);
  DescriptorChain chain = pop_one();
  DescriptorChain moved = std::move(chain);
  // The uses after a move below are the point: a moved-from or returned chain must be refused.
  // NOLINTNEXTLINE(bugprone-use-after-move)
  queue.add_used(std::move(chain), 0);  // moved-from: refused
  EXPECT_EQ(driver.used_idx(), 0);
  queue.add_used(std::move(moved), 0);
  // NOLINTNEXTLINE(bugprone-use-after-move)
  queue.add_used(std::move(moved), 0);  // second return: refused
  EXPECT_EQ(driver.used_idx(), 1);

  SplitQueue other(memory, kMaxSize);
  QueueConfig config = default_config();
  config.used_ring = kUsedRing + 0x1000;
  other.activate(config);
  DescriptorChain foreign = pop_one();
  other.add_used(std::move(foreign), 0);  // refused, and the chain is still owed to `queue`
  EXPECT_EQ(Driver(memory, config).used_idx(), 0);
  // NOLINTNEXTLINE(bugprone-use-after-move)
  queue.add_used(std::move(foreign), 0);
  EXPECT_EQ(driver.used_idx(), 2);
}

TEST_F(SplitQueueTest, DiscardedChainIsNotReturned) {
  activate(default_config());
  driver.desc(0, kData, 8);
  driver.publish(0);
  pop_one().discard();
  EXPECT_EQ(driver.used_idx(), 0);
  EXPECT_FALSE(queue.needs_notification());
}

// Random bytes as descriptor table and rings, biased towards almost-valid values so that chains
// are actually popped: the queue never crashes and every buffer lies inside the RAM.
TEST(SplitQueueRandomTest, HostileRingsStayInsideRam) {
  constexpr uint64_t kSmallRam = 64 * 1024;
  std::vector<uint8_t> ram(kSmallRam);
  const GuestMemory memory = GuestMemory::from_regions({{0x100000, kSmallRam, ram.data()}});
  std::mt19937_64 random(0xc0ffee);
  int popped = 0;
  int broke = 0;
  int multi = 0;
  for (int round = 0; round < 4000; ++round) {
    const uint16_t size = uint16_t{1} << (random() % 6);
    SplitQueue queue(memory, 32);
    QueueConfig config{.size = size,
                       .desc_table = 0x100000,
                       .avail_ring = 0x100800,
                       .used_ring = 0x100c00,
                       .event_idx = (random() & 1) != 0,
                       .indirect_desc = (random() & 1) != 0};
    queue.activate(config);
    for (uint64_t i = 0; i < kSmallRam; i += 8) {
      const uint64_t word = random();
      std::memcpy(&ram[i], &word, 8);
    }
    // Descriptors: mostly addresses near the RAM, small lengths, small next indices.
    for (uint16_t i = 0; i < 64; ++i) {
      VirtqDesc desc;
      std::memcpy(&desc, &ram[16 * i], sizeof(desc));
      if (random() % 4 != 0) {
        desc.addr = 0x100000 - 0x100 + random() % (kSmallRam + 0x200);
        desc.len = static_cast<uint32_t>(random() % 0x400);
        desc.next = static_cast<uint16_t>(random() % (size + 1));
        desc.flags = (random() % 2 ? kVirtqDescFNext : 0) | (random() % 3 ? 0 : kVirtqDescFWrite);
        if (random() % 8 == 0) {
          desc.flags |= kVirtqDescFIndirect;
          desc.len = 16 * static_cast<uint32_t>(random() % 5);
        }
      }
      std::memcpy(&ram[16 * i], &desc, sizeof(desc));
    }
    // Avail ring heads mostly in range; avail idx mostly a plausible distance ahead.
    for (uint16_t i = 0; i < size; ++i) {
      const uint16_t head = static_cast<uint16_t>(random() % 4 ? random() % size : random());
      std::memcpy(&ram[0x804 + 2 * i], &head, 2);
    }
    const uint16_t idx = static_cast<uint16_t>(random() % 4 ? random() % (size + 1) : random());
    std::memcpy(&ram[0x802], &idx, 2);

    for (int step = 0; step < 3 * size; ++step) {
      auto chain = queue.pop();
      if (!chain) break;
      ++popped;
      multi += chain->buffers().size() > 1;
      for (const Buffer& buffer : *chain) {
        ASSERT_GE(buffer.addr, 0x100000u);
        ASSERT_LE(buffer.addr + buffer.len, 0x100000u + kSmallRam);
        ASSERT_GT(buffer.len, 0u);
      }
      std::vector<uint8_t> scratch(chain->readable_bytes() + chain->writable_bytes());
      EXPECT_EQ(chain->read(0, scratch), chain->readable_bytes());
      EXPECT_EQ(chain->write(0, scratch), chain->writable_bytes());
      const uint32_t written = static_cast<uint32_t>(random());
      queue.add_used(std::move(*chain), written);
      queue.needs_notification();
    }
    broke += queue.broken();
  }
  // The bias must produce both outcomes, or the test proves little.
  EXPECT_GT(popped, 800);
  EXPECT_GT(multi, 100);
  EXPECT_GT(broke, 2000);
}

// ---- Snapshot and restore ----

template <typename T>
void patch(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

// Offsets in SplitQueue::save_state's layout (an empty broken reason).
constexpr size_t kSavedReady = 0, kSavedSize = 1, kSavedDescTable = 3, kSavedEventIdx = 27,
                 kSavedBroken = 29, kSavedNextAvail = 34, kSavedPublishedUsed = 38,
                 kSavedBytes = 44;

class SplitQueueStateTest : public SplitQueueTest {
 protected:
  // The queue mid-use, with EVENT_IDX: chains 0, 1, 2 made available, 0 and 1 popped, 0 returned.
  // Returns the chain still held (1).
  DescriptorChain mid_use() {
    QueueConfig config = default_config();
    config.event_idx = true;
    activate(config);
    for (uint16_t head = 0; head < 3; ++head) {
      driver.desc(head, kData + 0x100 * head, 0x40, kVirtqDescFWrite);
      driver.publish(head);
    }
    queue.add_used(pop_one(), 7);
    EXPECT_TRUE(queue.needs_notification());
    return pop_one();
  }

  std::vector<uint8_t> saved() const {
    StateWriter out;
    queue.save_state(out);
    return out.take();
  }

  // Restores `bytes` into `restored`, which must read all of them.
  static void restore(SplitQueue& restored, const std::vector<uint8_t>& bytes) {
    StateReader in(bytes, "queue 0");
    restored.restore_state(in);
    in.expect_end();
  }

  void expect_corrupt(const std::vector<uint8_t>& bytes, const std::string& reason) {
    SplitQueue restored(memory, kMaxSize);
    try {
      restore(restored, bytes);
      ADD_FAILURE() << "accepted, expected: " << reason;
    } catch (const Error& error) {
      EXPECT_THAT(error.what(), ::testing::StartsWith("queue 0: corrupt state: "));
      EXPECT_THAT(error.what(), HasSubstr(reason));
    }
  }
};

TEST_F(SplitQueueStateTest, AQueueMidUseCarriesOnTheSameAfterARestore) {
  DescriptorChain held = mid_use();
  const std::vector<uint8_t> bytes = saved();
  StateWriter chains;
  SplitQueue::save_chains(chains, std::span<const DescriptorChain>(&held, 1));

  testing::RestoredRam copy(ram);
  SplitQueue restored(copy.memory, kMaxSize);
  restore(restored, bytes);
  EXPECT_EQ(restored.debug_state(), queue.debug_state());
  EXPECT_EQ(restored.config(), queue.config());
  EXPECT_EQ(restored.chains_in_use(), 1);
  StateReader chains_in(chains.bytes(), "queue 0");
  std::vector<DescriptorChain> reclaimed = restored.restore_chains(chains_in, 4);
  chains_in.expect_end();
  ASSERT_EQ(reclaimed.size(), 1u);
  EXPECT_EQ(reclaimed[0].head(), 1);
  EXPECT_THAT(buffers(reclaimed[0]), ElementsAre(Buffer{kData + 0x100, 0x40, true}));

  // The same driver steps on both copies of RAM, the same device steps on both queues.
  Driver restored_driver(copy.memory, queue.config());
  restored_driver.set_avail_idx(3);
  for (Driver* d : {&driver, &restored_driver}) {
    d->desc(3, kData + 0x300, 0x40, kVirtqDescFWrite);
    d->publish(3);
    d->set_used_event(2);
  }
  for (SplitQueue* q : {&queue, &restored}) {
    DescriptorChain two = pop_from(*q);
    DescriptorChain three = pop_from(*q);
    EXPECT_EQ(two.head(), 2);
    EXPECT_EQ(three.head(), 3);
    EXPECT_FALSE(q->pop().has_value());
    q->add_used(std::move(two), 5);
    q->add_used(std::move(three), 9);
  }
  queue.add_used(std::move(held), 3);
  restored.add_used(std::move(reclaimed[0]), 3);
  EXPECT_TRUE(queue.needs_notification());  // used_event 2 lies in [1, 4)
  EXPECT_TRUE(restored.needs_notification());
  EXPECT_EQ(restored_driver.used_idx(), 4);
  EXPECT_EQ(restored_driver.used(3).id, 1u);
  EXPECT_EQ(restored_driver.used(3).len, 3u);
  const auto used_ring = [](const std::vector<uint8_t>& bytes) {
    return std::vector<uint8_t>(bytes.begin() + kUsedRing,
                                bytes.begin() + kUsedRing + used_ring_bytes(kMaxSize));
  };
  EXPECT_EQ(used_ring(copy.ram), used_ring(ram));
}

TEST_F(SplitQueueStateTest, NotReadyAndBrokenQueuesRoundTrip) {
  SplitQueue restored(memory, kMaxSize);
  restore(restored, saved());
  EXPECT_FALSE(restored.ready());

  activate(default_config());
  driver.desc(0, kData, 8, kVirtqDescFNext, 40);
  driver.publish(0);
  EXPECT_FALSE(queue.pop().has_value());
  ASSERT_TRUE(queue.broken());
  restore(restored, saved());
  EXPECT_TRUE(restored.broken());
  EXPECT_EQ(restored.broken_reason(), queue.broken_reason());
  EXPECT_FALSE(restored.pop().has_value());
  // A broken queue completes nothing: the chains held are moot, whatever their count.
  StateWriter chains;
  SplitQueue::save_chains(chains, {});
  StateReader chains_in(chains.bytes(), "queue 0");
  EXPECT_TRUE(restored.restore_chains(chains_in, 1).empty());
}

TEST_F(SplitQueueStateTest, ARestoreStartsAfresh) {
  DescriptorChain held = mid_use();
  // Over the queue in use: its chains are stale, as after reset().
  restore(queue, saved());
  queue.add_used(std::move(held), 1);
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(queue.chains_in_use(), 1);
}

TEST_F(SplitQueueStateTest, TruncatedStateThrows) {
  DescriptorChain held = mid_use();
  const std::vector<uint8_t> bytes = saved();
  queue.add_used(std::move(held), 0);
  ASSERT_EQ(bytes.size(), kSavedBytes);
  for (size_t size = 0; size < bytes.size(); ++size) {
    expect_corrupt({bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)}, "truncated");
  }
}

TEST_F(SplitQueueStateTest, CorruptValuesThrow) {
  DescriptorChain held = mid_use();
  const std::vector<uint8_t> good = saved();
  queue.add_used(std::move(held), 0);
  auto with = [&](auto change) {
    std::vector<uint8_t> bytes = good;
    change(bytes);
    return bytes;
  };
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedReady, 2); }), "neither 0 nor 1");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedEventIdx, 7); }), "neither 0 nor 1");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedReady, 0); }),
                 "a queue that is not ready has a configuration or indices");
  expect_corrupt(with([](auto& b) { patch<uint16_t>(b, kSavedSize, 12); }),
                 "virtqueue size 12 is not a power of two");
  expect_corrupt(with([](auto& b) { patch<uint16_t>(b, kSavedSize, 32); }), "virtqueue size 32");
  expect_corrupt(with([](auto& b) { patch<uint64_t>(b, kSavedDescTable, kRamSize - 16); }),
                 "outside guest memory");
  expect_corrupt(with([](auto& b) { patch<uint64_t>(b, kSavedDescTable, kDescTable + 8); }),
                 "not 16-byte aligned");
  expect_corrupt(with([](auto& b) { patch<uint8_t>(b, kSavedBroken, 1); }),
                 "broken flag and reason disagree");
  expect_corrupt(with([](auto& b) { patch<uint16_t>(b, kSavedPublishedUsed, 0xfff0); }),
                 "used entries filled ahead of used->idx");
  expect_corrupt(with([](auto& b) { patch<uint16_t>(b, kSavedNextAvail, 40); }),
                 "chains in use (40 popped, 1 returned) exceed the size 16");
  expect_corrupt(with([](auto& b) { patch<uint32_t>(b, kSavedBroken + 1, 4096); }),
                 "exceeds its limit");
}

TEST_F(SplitQueueStateTest, HeldChainsMustBeTheChainsInUse) {
  DescriptorChain held = mid_use();
  const std::vector<uint8_t> bytes = saved();
  auto restore_heads = [&](const std::vector<uint16_t>& heads, size_t max) {
    SplitQueue restored(memory, kMaxSize);
    restore(restored, bytes);
    StateWriter out;
    out.put_vector(heads);
    StateReader in(out.bytes(), "queue 0");
    return restored.restore_chains(in, max);
  };
  EXPECT_THAT([&] { restore_heads({}, 4); },
              ::testing::ThrowsMessage<Error>(HasSubstr("holds 0 chain(s) of a queue with 1")));
  EXPECT_THAT(
      [&] {
        restore_heads({1, 2}, 4);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("holds 2 chain(s)")));
  EXPECT_THAT(
      [&] {
        restore_heads({1, 2}, 1);
      },
      ::testing::ThrowsMessage<Error>(HasSubstr("exceeds its limit")));
  EXPECT_THAT([&] { restore_heads({16}, 4); },
              ::testing::ThrowsMessage<Error>(HasSubstr("held chain head 16 is out of range")));
  // The guest spoiled the held chain's descriptor meanwhile: the queue breaks, as pop() would.
  driver.desc(1, kData, 8, kVirtqDescFNext, 40);
  SplitQueue restored(memory, kMaxSize);
  restore(restored, bytes);
  StateWriter out;
  SplitQueue::save_chains(out, std::span<const DescriptorChain>(&held, 1));
  StateReader in(out.bytes(), "queue 0");
  EXPECT_TRUE(restored.restore_chains(in, 4).empty());
  EXPECT_TRUE(restored.broken());
  EXPECT_THAT(restored.broken_reason(), HasSubstr("next index 40"));
  queue.add_used(std::move(held), 0);
}

}  // namespace
}  // namespace vmm::devices::virtio
