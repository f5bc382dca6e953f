#include "devices/bus.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "base/util/error.hpp"

namespace vmm::devices {
namespace {

// Remembers every access; reads return the offset's low byte plus the index in the access.
class RecordingDevice final : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
    accesses.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, {data.begin(), data.end()}});
  }
  std::vector<Access> accesses;
};

class BusTest : public ::testing::Test {
 protected:
  Bus bus{"pio"};
  std::shared_ptr<RecordingDevice> low = std::make_shared<RecordingDevice>();
  std::shared_ptr<RecordingDevice> high = std::make_shared<RecordingDevice>();
};

TEST_F(BusTest, InsertsDisjointAndAdjacentRanges) {
  bus.insert(0x60, 1, low);
  bus.insert(0x61, 3, high);  // starts exactly where the first ends
  bus.insert(0x3f8, 8, std::make_shared<RecordingDevice>());
  uint8_t byte = 0;
  EXPECT_TRUE(bus.read(0x60, {&byte, 1}));
  EXPECT_TRUE(bus.read(0x63, {&byte, 1}));
  EXPECT_EQ(low->accesses.size(), 1u);
  EXPECT_EQ(high->accesses.size(), 1u);
}

TEST_F(BusTest, RefusesOverlaps) {
  bus.insert(0x100, 0x10, low);
  EXPECT_THROW(bus.insert(0x100, 0x10, high), Error);  // same range
  EXPECT_THROW(bus.insert(0x10f, 1, high), Error);     // last byte
  EXPECT_THROW(bus.insert(0xf8, 0x9, high), Error);    // runs into it from below
  EXPECT_THROW(bus.insert(0x104, 2, high), Error);     // inside it
  EXPECT_THROW(bus.insert(0x80, 0x100, high), Error);  // around it
  bus.insert(0xf0, 0x10, high);                        // ends right before it
  bus.insert(0x110, 1, std::make_shared<RecordingDevice>());
}

TEST_F(BusTest, RefusesEmptyAndWrappingRanges) {
  EXPECT_THROW(bus.insert(0x100, 0, low), Error);
  EXPECT_THROW(bus.insert(~uint64_t{0} - 1, 4, low), Error);
}

TEST_F(BusTest, OverlapErrorNamesTheBusAndRanges) {
  bus.insert(0x3f8, 8, low);
  try {
    bus.insert(0x3fc, 8, high);
    FAIL() << "overlap accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("pio bus"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("0x3f8"), std::string::npos) << error.what();
  }
}

TEST_F(BusTest, DispatchesWithOffsetsRelativeToTheRange) {
  bus.insert(0x3f8, 8, low);
  bus.insert(0x600, 2, high);

  uint8_t word[2] = {};
  EXPECT_TRUE(bus.read(0x3fd, word));
  EXPECT_EQ(word[0], 5);
  EXPECT_EQ(word[1], 6);

  const uint8_t value[] = {0x34};
  EXPECT_TRUE(bus.write(0x601, value));

  ASSERT_EQ(low->accesses.size(), 1u);
  EXPECT_FALSE(low->accesses[0].write);
  EXPECT_EQ(low->accesses[0].offset, 5u);
  EXPECT_EQ(low->accesses[0].data.size(), 2u);
  ASSERT_EQ(high->accesses.size(), 1u);
  EXPECT_TRUE(high->accesses[0].write);
  EXPECT_EQ(high->accesses[0].offset, 1u);
  EXPECT_EQ(high->accesses[0].data, std::vector<uint8_t>{0x34});
}

TEST_F(BusTest, UnmappedReadsGiveAllOnes) {
  bus.insert(0x60, 1, low);
  uint8_t data[4] = {1, 2, 3, 4};
  EXPECT_FALSE(bus.read(0x70, data));
  for (uint8_t byte : data) EXPECT_EQ(byte, 0xff);
  EXPECT_FALSE(bus.read(0x10, data));  // below every range
  EXPECT_FALSE(bus.write(0x70, data));
  EXPECT_TRUE(low->accesses.empty());
}

TEST_F(BusTest, RefusesAccessesStraddlingTheEndOfARange) {
  bus.insert(0x3f8, 8, low);
  bus.insert(0x400, 8, high);  // adjacent: a straddling access must not reach either
  uint8_t data[4] = {};
  EXPECT_FALSE(bus.read(0x3fe, data));
  for (uint8_t byte : data) EXPECT_EQ(byte, 0xff);
  EXPECT_FALSE(bus.write(0x3fd, data));
  EXPECT_TRUE(bus.read(0x3fc, data));  // ends exactly at the range's end
  ASSERT_EQ(low->accesses.size(), 1u);
  EXPECT_EQ(low->accesses[0].offset, 4u);
  EXPECT_TRUE(high->accesses.empty());
}

TEST_F(BusTest, HandlesAccessesNearTheTopOfTheAddressSpace) {
  const uint64_t base = ~uint64_t{0} - 15;
  bus.insert(base, 8, low);
  uint8_t data[8] = {};
  EXPECT_TRUE(bus.read(base, data));
  EXPECT_FALSE(bus.read(base + 4, data));  // runs past the range's end
  EXPECT_FALSE(bus.read(~uint64_t{0}, std::span<uint8_t>(data, 1)));
  EXPECT_FALSE(bus.read(~uint64_t{0} - 3, data));  // address + size wraps around
  EXPECT_EQ(low->accesses.size(), 1u);
}

}  // namespace
}  // namespace vmm::devices
