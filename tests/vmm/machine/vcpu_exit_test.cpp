#include "vmm/machine/vcpu_exit.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace vmm {
namespace {

using devices::GuestRequest;
using testing::HasSubstr;

constexpr size_t kPage = 4096;
// KVM's x86 mapping: the kvm_run page, the port I/O data page, the coalesced MMIO ring.
constexpr size_t kMappingSize = 3 * kPage;

// Every access a device saw: offset, bytes, and whether it was a write. Reads return 0xa0, 0xa1...
class Recorder final : public devices::BusDevice {
 public:
  struct Access {
    uint64_t offset;
    std::vector<uint8_t> bytes;
    bool write;
  };
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0xa0 + reads_ + i);
    ++reads_;
    accesses.push_back({offset, {data.begin(), data.end()}, false});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({offset, {data.begin(), data.end()}, true});
  }
  std::vector<Access> accesses;

 private:
  size_t reads_ = 0;
};

class VcpuExit : public testing::Test {
 protected:
  VcpuExit() : storage_(kMappingSize / sizeof(uint64_t)) {
    pio_.insert(0x3f8, 8, port_);
    mmio_.insert(0xd0000000, 0x1000, mmio_device_);
  }

  std::span<uint8_t> mapping(size_t size = kMappingSize) {
    return {reinterpret_cast<uint8_t*>(storage_.data()), size};
  }
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(storage_.data()); }
  uint8_t* at(uint64_t offset) { return mapping().data() + offset; }

  void port_exit(uint8_t direction, uint16_t port, uint8_t size, uint32_t count,
                 uint64_t data_offset = kPage) {
    run().exit_reason = KVM_EXIT_IO;
    run().io.direction = direction;
    run().io.port = port;
    run().io.size = size;
    run().io.count = count;
    run().io.data_offset = data_offset;
  }
  void mmio_exit(bool write, uint64_t address, uint32_t len) {
    run().exit_reason = KVM_EXIT_MMIO;
    run().mmio.is_write = write ? 1 : 0;
    run().mmio.phys_addr = address;
    run().mmio.len = len;
  }
  ExitAction decode(size_t size = kMappingSize) { return decode_exit(mapping(size), pio_, mmio_); }

  std::vector<uint64_t> storage_;  // 8-byte aligned, as the mmap is
  std::shared_ptr<Recorder> port_ = std::make_shared<Recorder>();
  std::shared_ptr<Recorder> mmio_device_ = std::make_shared<Recorder>();
  devices::Bus pio_{"pio"};
  devices::Bus mmio_{"mmio"};
};

TEST_F(VcpuExit, OutbReachesThePortsDevice) {
  port_exit(KVM_EXIT_IO_OUT, 0x3f9, 1, 1);
  *at(kPage) = 0x2a;
  const ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kContinue);
  ASSERT_EQ(port_->accesses.size(), 1u);
  EXPECT_TRUE(port_->accesses[0].write);
  EXPECT_EQ(port_->accesses[0].offset, 1u);
  EXPECT_EQ(port_->accesses[0].bytes, std::vector<uint8_t>{0x2a});
}

TEST_F(VcpuExit, InlFillsTheDataInTheMapping) {
  port_exit(KVM_EXIT_IO_IN, 0x3f8, 4, 1, 0x1100);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_EQ(std::vector<uint8_t>(at(0x1100), at(0x1104)),
            (std::vector<uint8_t>{0xa0, 0xa1, 0xa2, 0xa3}));
}

TEST_F(VcpuExit, RepOutswDeliversEachItemInTurn) {
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 2, 3);
  const uint8_t words[] = {1, 2, 3, 4, 5, 6};
  std::memcpy(at(kPage), words, sizeof(words));
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  ASSERT_EQ(port_->accesses.size(), 3u);
  EXPECT_EQ(port_->accesses[0].bytes, (std::vector<uint8_t>{1, 2}));
  EXPECT_EQ(port_->accesses[1].bytes, (std::vector<uint8_t>{3, 4}));
  EXPECT_EQ(port_->accesses[2].bytes, (std::vector<uint8_t>{5, 6}));
}

TEST_F(VcpuExit, RepInsbFillsEachItemUpToTheMappingsLastByte) {
  // A whole page of items ending exactly at the end of the mapping.
  port_exit(KVM_EXIT_IO_IN, 0x3f8, 1, kPage, kMappingSize - kPage);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_EQ(port_->accesses.size(), kPage);
  EXPECT_EQ(*at(kMappingSize - kPage), 0xa0);
  EXPECT_EQ(*at(kMappingSize - 1), static_cast<uint8_t>(0xa0 + kPage - 1));
}

TEST_F(VcpuExit, PortDataReachingPastTheMappingFailsWithoutAnyAccess) {
  port_exit(KVM_EXIT_IO_IN, 0x3f8, 1, kPage + 1, kMappingSize - kPage);
  ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("outside the 12288-byte kvm_run mapping"));

  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 4, 1, kMappingSize - 3);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 1, kMappingSize);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);
  // Offsets and counts whose sum would wrap.
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 4, std::numeric_limits<uint32_t>::max(), kPage);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 2, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);
  // A mapping smaller than KVM's: the same exit that fits in 3 pages does not fit in 1.
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 1, kPage);
  EXPECT_EQ(decode(kPage).kind, ExitAction::Kind::kFail);
  EXPECT_TRUE(port_->accesses.empty());
}

TEST_F(VcpuExit, PortDataMayLieInsideStructKvmRunItself) {
  // Not where KVM puts it, but inside the mapping: harmless, so it is carried out.
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 1, 0);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_EQ(port_->accesses.size(), 1u);
}

TEST_F(VcpuExit, AnInWhoseDataOverlapsTheExitItselfStillDoesEachItemOnce) {
  // The items' data covers kvm_run's io fields: each read overwrites them.
  port_exit(KVM_EXIT_IO_IN, 0x3f8, 1, 64, 0);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_EQ(port_->accesses.size(), 64u);
}

TEST_F(VcpuExit, ACountOfZeroTouchesNothing) {
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 0, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);  // its offset is still outside
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 0);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_TRUE(port_->accesses.empty());
}

TEST_F(VcpuExit, PortWidthsOtherThanOneTwoOrFourFail) {
  for (const uint8_t size : {0, 3, 8, 255}) {
    port_exit(KVM_EXIT_IO_OUT, 0x3f8, size, 1);
    const ExitAction action = decode();
    EXPECT_EQ(action.kind, ExitAction::Kind::kFail) << int{size};
    EXPECT_THAT(action.message, HasSubstr("bytes")) << int{size};
  }
  EXPECT_TRUE(port_->accesses.empty());
}

TEST_F(VcpuExit, AnUnknownPortDirectionFails) {
  port_exit(2, 0x3f8, 1, 1);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kFail);
  EXPECT_TRUE(port_->accesses.empty());
}

TEST_F(VcpuExit, AnUnclaimedPortReadsAllOnes) {
  port_exit(KVM_EXIT_IO_IN, 0x80, 2, 2);
  std::memset(at(kPage), 0, 4);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_EQ(std::vector<uint8_t>(at(kPage), at(kPage + 4)),
            (std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff}));
}

TEST_F(VcpuExit, MmioWriteAndRead) {
  mmio_exit(true, 0xd0000070, 4);
  const uint8_t value[] = {0xf, 0, 0, 0};
  std::memcpy(run().mmio.data, value, sizeof(value));
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  mmio_exit(false, 0xd0000ff8, 8);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  ASSERT_EQ(mmio_device_->accesses.size(), 2u);
  EXPECT_TRUE(mmio_device_->accesses[0].write);
  EXPECT_EQ(mmio_device_->accesses[0].offset, 0x70u);
  EXPECT_EQ(mmio_device_->accesses[0].bytes, (std::vector<uint8_t>{0xf, 0, 0, 0}));
  EXPECT_EQ(mmio_device_->accesses[1].offset, 0xff8u);
  EXPECT_EQ(run().mmio.data[0], 0xa0);
  EXPECT_EQ(run().mmio.data[7], 0xa7);
}

TEST_F(VcpuExit, AnEmptyMmioAccessReachesNoDevice) {
  mmio_exit(true, 0xd0000000, 0);
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
  EXPECT_TRUE(mmio_device_->accesses.empty());
}

TEST_F(VcpuExit, MmioOfMoreThanEightBytesFailsWithoutAnAccess) {
  for (const uint32_t len : {9u, 16u, 0xffffffffu}) {
    mmio_exit(false, 0xd0000000, len);
    const ExitAction action = decode();
    EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
    EXPECT_THAT(action.message, HasSubstr("at most 8"));
  }
  EXPECT_TRUE(mmio_device_->accesses.empty());
}

TEST_F(VcpuExit, AMappingSmallerThanStructKvmRunFailsBeforeReadingIt) {
  port_exit(KVM_EXIT_IO_OUT, 0x3f8, 1, 1, 0);
  const ExitAction action = decode(sizeof(kvm_run) - 1);
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("fewer than"));
  EXPECT_EQ(decode(0).kind, ExitAction::Kind::kFail);
  EXPECT_TRUE(port_->accesses.empty());
}

TEST_F(VcpuExit, ATripleFaultIsAReboot) {
  run().exit_reason = KVM_EXIT_SHUTDOWN;
  const ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kGuestRequest);
  EXPECT_EQ(action.request, GuestRequest::kReboot);
  EXPECT_TRUE(action.triple_fault);
}

TEST(TripleFault, TheWarningSaysWhereTheVcpuWas) {
  kvm_regs regs{};
  regs.rip = 0xffffffff81000123;
  kvm_sregs sregs{};
  sregs.cr0 = 0x80050033;
  sregs.cr3 = 0x1a2b000;
  sregs.cr4 = 0x3606f0;
  EXPECT_EQ(describe_triple_fault(1, regs, sregs),
            "vCPU 1: triple fault (the guest is reset) at rip 0xffffffff81000123, cr0 0x80050033, "
            "cr3 0x1a2b000, cr4 0x3606f0");
  regs.rip = 0xfff0;
  sregs.cr0 = 0x60000010;
  sregs.cr3 = 0;
  sregs.cr4 = 0;
  EXPECT_EQ(describe_triple_fault(0, regs, sregs),
            "vCPU 0: triple fault (the guest is reset) at rip 0xfff0, cr0 0x60000010, cr3 0x0, "
            "cr4 0x0 (the reset state: this host's KVM reset the vCPU, where it faulted is lost)");
}

TEST_F(VcpuExit, SystemEventsBecomeGuestRequests) {
  run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  const struct {
    uint32_t type;
    GuestRequest request;
  } cases[] = {{KVM_SYSTEM_EVENT_SHUTDOWN, GuestRequest::kPowerOff},
               {KVM_SYSTEM_EVENT_RESET, GuestRequest::kReboot},
               {KVM_SYSTEM_EVENT_CRASH, GuestRequest::kPanic}};
  for (const auto& c : cases) {
    run().system_event.type = c.type;
    const ExitAction action = decode();
    EXPECT_EQ(action.kind, ExitAction::Kind::kGuestRequest) << c.type;
    EXPECT_EQ(action.request, c.request) << c.type;
  }
  run().system_event.type = 77;
  const ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("system event 77"));
}

TEST_F(VcpuExit, AnEmulationFailureAsksForTheRip) {
  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_TRUE(action.add_rip);
  EXPECT_THAT(action.message, HasSubstr("instruction emulation failed"));

  run().internal.suberror = KVM_INTERNAL_ERROR_DELIVERY_EV;
  action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_FALSE(action.add_rip);
  EXPECT_THAT(action.message, HasSubstr("suberror 3"));
}

TEST_F(VcpuExit, AFailedEntrySaysTheHardwareReason) {
  run().exit_reason = KVM_EXIT_FAIL_ENTRY;
  run().fail_entry.hardware_entry_failure_reason = 0x80000021;
  const ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("0x80000021"));
}

TEST_F(VcpuExit, AnInterruptedRunContinues) {
  run().exit_reason = KVM_EXIT_INTR;
  EXPECT_EQ(decode().kind, ExitAction::Kind::kContinue);
}

TEST_F(VcpuExit, UnexpectedAndUnknownExitsFailNamingTheReason) {
  run().exit_reason = KVM_EXIT_HLT;  // only without the in-kernel irqchip, which vmm always has
  ExitAction action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("unexpected KVM exit 5 (hlt)"));

  run().exit_reason = 0xdead;
  action = decode();
  EXPECT_EQ(action.kind, ExitAction::Kind::kFail);
  EXPECT_THAT(action.message, HasSubstr("unexpected KVM exit 57005 (unknown reason)"));
}

TEST(VcpuExitCounts, NamesEachReasonCountedAndFoldsUnknownOnes) {
  VcpuExitCounts counts;
  EXPECT_TRUE(counts.snapshot().empty());
  counts.count(KVM_EXIT_IO);
  counts.count(KVM_EXIT_IO);
  counts.count(KVM_EXIT_MMIO);
  counts.count(0xdead);  // beyond what KVM defines: no out-of-bounds count
  counts.count(std::numeric_limits<uint32_t>::max());
  const std::map<std::string, uint64_t> expected{{"io", 2}, {"mmio", 1}, {"other", 2}};
  EXPECT_EQ(counts.snapshot(), expected);
}

}  // namespace
}  // namespace vmm
