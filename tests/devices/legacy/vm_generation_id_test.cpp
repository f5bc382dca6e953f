#include "devices/legacy/vm_generation_id.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "base/util/error.hpp"
#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kIdAddress = 0x2000;

class VmGenerationIdTest : public ::testing::Test {
 protected:
  VmGenerationId::Id id_in_ram() const {
    VmGenerationId::Id id{};
    EXPECT_TRUE(memory_.read(kIdAddress, id));
    return id;
  }

  std::vector<uint8_t> ram_ = std::vector<uint8_t>(0x4000, 0);
  GuestMemory memory_ = GuestMemory::from_regions({{0, ram_.size(), ram_.data()}});
  testing::FakeInterruptLine line_;
};

TEST_F(VmGenerationIdTest, WritesItsIdIntoGuestMemoryAndNothingElse) {
  VmGenerationId device(memory_, kIdAddress, line_);
  EXPECT_EQ(id_in_ram(), device.id());
  EXPECT_NE(device.id(), VmGenerationId::Id{});
  const auto zero = [](uint8_t byte) { return byte == 0; };
  EXPECT_TRUE(std::all_of(ram_.begin(), ram_.begin() + kIdAddress, zero));
  EXPECT_TRUE(std::all_of(ram_.begin() + kIdAddress + 16, ram_.end(), zero));
  EXPECT_TRUE(line_.levels.empty()) << "creating the device must not notify the guest";
}

TEST_F(VmGenerationIdTest, EachDeviceWritesANewId) {
  VmGenerationId booted(memory_, kIdAddress, line_);
  const VmGenerationId::Id first = id_in_ram();
  VmGenerationId restored(memory_, kIdAddress, line_);
  EXPECT_NE(id_in_ram(), first);
  EXPECT_EQ(id_in_ram(), restored.id());
}

TEST_F(VmGenerationIdTest, NotifyRaisesOneEdge) {
  VmGenerationId device(memory_, kIdAddress, line_);
  device.notify_guest();
  EXPECT_EQ(line_.rising_edges(), 1);
  EXPECT_FALSE(line_.level());
}

TEST_F(VmGenerationIdTest, IdOutsideGuestMemoryThrows) {
  try {
    VmGenerationId device(memory_, ram_.size() - 8, line_);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("VM Generation ID (16 bytes at 0x3ff8)"));
  }
}

TEST(RandomGenerationId, DiffersEachCall) {
  EXPECT_NE(random_generation_id(), random_generation_id());
}

}  // namespace
}  // namespace vmm::devices
