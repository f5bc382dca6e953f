#include "devices/legacy/i8042.hpp"

#include <gtest/gtest.h>

#include <optional>

#include "tests/devices/fakes.hpp"

namespace vmm::devices {
namespace {

constexpr uint64_t kData = 0;     // port 0x60
constexpr uint64_t kCommand = 4;  // port 0x64
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusAuxData = 0x20;

class I8042Test : public ::testing::Test {
 protected:
  uint8_t in(uint64_t port) { return testing::inb(controller, port); }
  void out(uint64_t port, uint8_t value) { testing::outb(controller, port, value); }
  // One i8042_command() as Linux issues it: command, parameter bytes, then the reply if any.
  std::optional<uint8_t> command(uint8_t command, std::optional<uint8_t> parameter = {}) {
    out(kCommand, command);
    if (parameter) out(kData, *parameter);
    if (!(in(kCommand)&kStatusOutputFull)) return std::nullopt;
    return in(kData);
  }

  testing::FakePlatformEvents events;
  testing::FakeInterruptLine irq;
  I8042 controller{events, &irq};
};

TEST_F(I8042Test, SelfTestPasses) {
  EXPECT_EQ(command(0xaa), 0x55);
  EXPECT_EQ(in(kCommand)&kStatusOutputFull, 0);
  EXPECT_EQ(in(kCommand)&0x04, 0x04);  // system flag
}

TEST_F(I8042Test, StatusShowsKeyboardUnlockedAndLastWriteTarget) {
  EXPECT_EQ(in(kCommand)&0x10, 0x10);
  out(kCommand, 0xad);
  EXPECT_EQ(in(kCommand)&0x08, 0x08);
  out(kCommand, 0x60);
  out(kData, 0x45);
  EXPECT_EQ(in(kCommand)&0x08, 0);
}

TEST_F(I8042Test, CommandByteReadsBackWhatWasWritten) {
  EXPECT_EQ(command(0x20), 0x45);  // keyboard interrupt, system flag, translation
  EXPECT_EQ(command(0x60, 0x30), std::nullopt);
  EXPECT_EQ(command(0x20), 0x30);
}

TEST_F(I8042Test, EnableDisableCommandsToggleTheCommandByte) {
  command(0x60, 0x00);
  command(0xa7);
  EXPECT_EQ(command(0x20), 0x20);  // AUX disabled
  command(0xa8);
  command(0xad);
  EXPECT_EQ(command(0x20), 0x10);  // keyboard disabled
  command(0xae);
  EXPECT_EQ(command(0x20), 0x00);
}

TEST_F(I8042Test, InterfaceTests) {
  EXPECT_EQ(command(0xab), 0x00);  // keyboard interface fine
  EXPECT_EQ(command(0xa9), 0x02);  // no mouse: clock line stuck
}

// Linux's i8042_check_aux: a failed AUX loopback followed by a failed AUX test means "no AUX
// port", decided after two commands and without the 250 ms IRQ delivery test.
TEST_F(I8042Test, AuxProbeFailsFast) {
  out(kCommand, 0xd3);
  out(kData, 0x5a);
  ASSERT_TRUE(in(kCommand)&kStatusOutputFull);
  EXPECT_EQ(in(kCommand)&kStatusAuxData, 0);  // not from the AUX channel: auxerr
  in(kData);
  const auto test = command(0xa9);
  ASSERT_TRUE(test);
  EXPECT_TRUE(*test != 0 && *test != 0xfa && *test != 0xff);
}

TEST_F(I8042Test, KeyboardBytesAreAnsweredWithResend) {
  out(kData, 0xf2);  // GET ID for a keyboard that isn't there
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(in(kData), 0xfe);
  EXPECT_FALSE(irq.level());
}

TEST_F(I8042Test, EveryQueuedByteGetsItsOwnEdge) {
  out(kData, 0xf2);
  out(kData, 0xed);
  EXPECT_EQ(in(kData), 0xfe);
  EXPECT_TRUE(irq.level());
  EXPECT_EQ(in(kData), 0xfe);
  EXPECT_FALSE(irq.level());
  EXPECT_EQ(irq.rising_edges(), 2);
}

TEST_F(I8042Test, NoInterruptWhenTheCommandByteDisablesIt) {
  command(0x60, 0x44);
  out(kData, 0xf2);
  EXPECT_FALSE(irq.level());
  EXPECT_TRUE(in(kCommand)&kStatusOutputFull);
}

TEST_F(I8042Test, WorksWithoutAnInterruptLine) {
  I8042 bare(events, nullptr);
  const uint8_t self_test = 0xaa;
  bare.write(kCommand, {&self_test, 1});
  uint8_t reply = 0;
  bare.read(kData, {&reply, 1});
  EXPECT_EQ(reply, 0x55);
}

TEST_F(I8042Test, PulsingTheResetLineReboots) {
  out(kCommand, 0xfe);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kReboot);
}

TEST_F(I8042Test, PulsingOtherOutputLinesDoesNothing) {
  out(kCommand, 0xff);
  EXPECT_TRUE(events.requests.empty());
}

TEST_F(I8042Test, ClearingTheResetBitOfTheOutputPortReboots) {
  command(0xd1, 0xdf);  // A20 on, reset bit high: the A20-gate idiom
  EXPECT_TRUE(events.requests.empty());
  EXPECT_EQ(command(0xd0), 0xdf);
  command(0xd1, 0xde);
  ASSERT_EQ(events.requests.size(), 1u);
  EXPECT_EQ(events.requests[0].first, GuestRequest::kReboot);
}

TEST_F(I8042Test, UndecodedPortsReadAllOnes) {
  for (uint64_t port = 1; port < 4; ++port) EXPECT_EQ(in(port), 0xff);
}

TEST_F(I8042Test, HostileAccessesDoNotCrash) {
  testing::hammer(controller, I8042::kPortCount);
  while (in(kCommand)&kStatusOutputFull) in(kData);
  EXPECT_EQ(command(0xaa), 0x55);
}

}  // namespace
}  // namespace vmm::devices
