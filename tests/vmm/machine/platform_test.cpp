#include "vmm/machine/platform.hpp"

#include <gtest/gtest.h>

#include <set>

#include "vmm/machine_config.hpp"

namespace vmm {
namespace {

TEST(Platform, VirtioDevicesGetDistinctFreeIoapicPins) {
  std::set<uint32_t> taken = {0, 2, kKeyboardGsi, kSerialGsi, 8};
  for (uint32_t index = 0; index < kMaxVirtioDevices; ++index) {
    const uint32_t gsi = virtio_gsi(index);
    EXPECT_LT(gsi, 24u) << "the in-kernel IOAPIC has 24 pins";
    EXPECT_TRUE(taken.insert(gsi).second) << "GSI " << gsi << " of virtio device " << index;
  }
}

}  // namespace
}  // namespace vmm
