#include "firmware/reset_vector.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

namespace vmm::firmware {
namespace {

TEST(ResetVector, RealModeStubWritesTheResetValueToThePort) {
  std::vector<uint8_t> ram(layout::kBiosAreaEnd);
  const auto memory = GuestMemory::from_regions({{0, ram.size(), ram.data()}});
  write_reset_vector(memory, 0x64, 0xfe);
  const std::vector<uint8_t> expected = {0xb0, 0xfe, 0xba, 0x64, 0x00,
                                         0xee, 0xfa, 0xf4, 0xeb, 0xfd};
  const std::vector<uint8_t> actual(ram.begin() + layout::kResetVector,
                                    ram.begin() + layout::kResetVector + expected.size());
  EXPECT_EQ(actual, expected);
  // The stub and the ACPI area don't overlap.
  EXPECT_LE(layout::kAcpiEnd, layout::kResetVector);
}

TEST(ResetVector, RefusesMemoryWithoutTheBiosArea) {
  std::vector<uint8_t> ram(0x10000);
  const auto memory = GuestMemory::from_regions({{0, ram.size(), ram.data()}});
  EXPECT_THROW(write_reset_vector(memory, 0x64, 0xfe), Error);
}

}  // namespace
}  // namespace vmm::firmware
