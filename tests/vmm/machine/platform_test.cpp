#include "vmm/machine/platform.hpp"

#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <array>
#include <cstdint>
#include <set>

#include "base/util/error.hpp"
#include "devices/bus.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/vcpu_exit.hpp"

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

TEST(Platform, RefusesAVirtioDeviceBeyondTheIoapicsPins) {
  try {
    virtio_gsi(kMaxVirtioDevices);
    FAIL() << "virtio device 18 got a GSI";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "virtio device 18: GSI 24 is beyond the IOAPIC's pins 0-23");
  }
  EXPECT_THROW(virtio_gsi(UINT32_MAX), Error);  // 6 + index must not wrap to a valid pin
}

// The vCPU exit of `outb(port, value)`, decoded as a vCPU thread does, against `pio`.
ExitAction outb(const devices::Bus& pio, uint16_t port, uint8_t value) {
  alignas(kvm_run) std::array<uint8_t, 4096> mapping{};
  auto* run = reinterpret_cast<kvm_run*>(mapping.data());
  run->exit_reason = KVM_EXIT_IO;
  run->io.direction = KVM_EXIT_IO_OUT;
  run->io.size = 1;
  run->io.port = port;
  run->io.count = 1;
  run->io.data_offset = 2048;
  mapping[2048] = value;
  return decode_exit(mapping, pio, devices::Bus("mmio"));
}

TEST(Platform, WithoutDebugExitTheGuestCannotChooseTheExitStatus) {
  ExitLatch latch;
  devices::Bus pio("pio");
  insert_guest_request_ports(pio, latch, false);
  // "timeout", "stopped by the host", "vmm failed": none of them is the guest's to claim.
  for (const uint8_t status : {124, 5, 1, 0}) {
    EXPECT_EQ(outb(pio, devices::DebugExit::kPortBase, status).kind, ExitAction::Kind::kContinue);
    uint8_t byte = status;
    EXPECT_FALSE(pio.write(devices::DebugExit::kPortBase, {&byte, 1})) << "0xf4 is not there";
  }
  EXPECT_FALSE(latch.is_set());
}

TEST(Platform, WithDebugExitTheGuestsByteIsTheExitStatus) {
  ExitLatch latch;
  devices::Bus pio("pio");
  insert_guest_request_ports(pio, latch, true);
  outb(pio, devices::DebugExit::kPortBase, 124);
  const auto exit = latch.result();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->reason, MachineExit::Reason::kDebugExit);
  EXPECT_EQ(exit->exit_status(), 124);
}

}  // namespace
}  // namespace vmm
