#include "devices/legacy/i8042.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/state_stream.hpp"
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

// Snapshot and restore.
struct Controller {
  uint8_t in(uint64_t port) { return testing::inb(device, port); }
  void out(uint64_t port, uint8_t value) { testing::outb(device, port, value); }
  std::vector<uint8_t> save() const {
    StateWriter writer;
    device.save_state(writer);
    return writer.take();
  }
  void restore(std::span<const uint8_t> state) {
    StateReader reader(state, "i8042");
    device.restore_state(reader);
    reader.expect_end();
  }

  testing::FakePlatformEvents events;
  testing::FakeInterruptLine irq;
  I8042 device{events, &irq};
};

// A changed command byte and controller RAM, two bytes waiting for the guest, a new output port,
// and a write-output-port command waiting for its data byte.
void make_busy(Controller& controller) {
  controller.out(kCommand, 0x60);
  controller.out(kData, 0x07);  // keyboard interrupt, system flag and an odd bit 1
  controller.out(kCommand, 0x7f);
  controller.out(kData, 0x99);  // the last RAM byte
  controller.out(kCommand, 0xd1);
  controller.out(kData, 0xdd);
  controller.out(kCommand, 0xaa);
  controller.out(kCommand, 0xd2);
  controller.out(kData, 0x42);
  controller.out(kCommand, 0xd1);
}

// Everything the guest reads on the same accesses, and the reboots it asks for.
std::vector<int> exercise(Controller& controller) {
  std::vector<int> seen;
  seen.push_back(controller.in(kCommand));
  controller.out(kData, 0xcf);  // the pending 0xd1's data byte
  while (controller.in(kCommand)&kStatusOutputFull) seen.push_back(controller.in(kData));
  for (uint8_t command : {0x20, 0x3f, 0xd0}) {
    controller.out(kCommand, command);
    seen.push_back(controller.in(kData));
  }
  seen.push_back(controller.in(kCommand));
  controller.out(kCommand, 0xd1);
  controller.out(kData, 0xce);  // reset bit cleared: reboot
  seen.push_back(static_cast<int>(controller.events.requests.size()));
  return seen;
}

TEST(I8042StateTest, ARestoredControllerBehavesAsTheOriginal) {
  Controller original;
  make_busy(original);
  ASSERT_TRUE(original.irq.level());
  const size_t levels_at_snapshot = original.irq.levels.size();

  Controller copy;
  copy.restore(original.save());
  EXPECT_EQ(copy.irq.levels, std::vector<bool>{true});  // driven to the restored level

  const std::vector<int> expected = exercise(original);
  EXPECT_EQ(exercise(copy), expected);
  EXPECT_EQ(expected, (std::vector<int>{0x1d, 0x55, 0x42, 0x07, 0x99, 0xcf, 0x1c, 1}));
  EXPECT_EQ(std::vector<bool>(copy.irq.levels.begin() + 1, copy.irq.levels.end()),
            std::vector<bool>(
                original.irq.levels.begin() + static_cast<std::ptrdiff_t>(levels_at_snapshot),
                original.irq.levels.end()));
}

TEST(I8042StateTest, TruncatedStateThrowsAndChangesNothing) {
  Controller original;
  make_busy(original);
  const std::vector<uint8_t> state = original.save();
  for (size_t size = 0; size < state.size(); ++size) {
    Controller copy;
    EXPECT_THROW(copy.restore(std::span(state).first(size)), Error) << size << " bytes";
    EXPECT_TRUE(copy.irq.levels.empty());
    EXPECT_EQ(copy.in(kCommand), 0x14);  // as constructed: system flag, unlocked, nothing to read
    copy.out(kCommand, 0x20);
    EXPECT_EQ(copy.in(kData), 0x45);
  }
}

// The saved fields, in order, to build states a controller could never have saved.
struct SavedI8042 {
  std::array<uint8_t, 32> ram{0x45};
  std::vector<uint8_t> output{};
  uint8_t output_port = 0x03;
  uint8_t pending_command = 0;
  uint8_t last_write_was_command = 0;

  std::vector<uint8_t> bytes() const {
    StateWriter writer;
    writer.put(ram);
    writer.put_vector(output);
    writer.put(output_port);
    writer.put(pending_command);
    writer.put(last_write_was_command);
    return writer.take();
  }
};

TEST(I8042StateTest, AFreshControllerSavesTheFieldsInTheirOrder) {
  EXPECT_EQ(Controller().save(), SavedI8042{}.bytes());
}

TEST(I8042StateTest, OutOfRangeValuesThrowAndChangeNothing) {
  const std::vector<std::pair<std::string, SavedI8042>> cases = {
      {"17 output bytes", {.output = std::vector<uint8_t>(I8042::kOutputCapacity + 1)}},
      {"a pending command without a data byte", {.pending_command = 0xaa}},
      {"a pending read command", {.pending_command = 0x20}},
      {"a flag of 2", {.last_write_was_command = 2}},
  };
  for (const auto& [name, fields] : cases) {
    Controller copy;
    EXPECT_THROW(copy.restore(fields.bytes()), Error) << name;
    EXPECT_TRUE(copy.irq.levels.empty()) << name;
    EXPECT_EQ(copy.in(kCommand), 0x14) << name;
  }
  for (uint8_t pending : {0x60, 0x7f, 0xd1, 0xd4}) {
    Controller copy;
    copy.restore(SavedI8042{.pending_command = pending}.bytes());
    copy.out(kData, 0x00);
    EXPECT_FALSE(copy.in(kCommand)&kStatusOutputFull) << int{pending};  // no resend: consumed
  }
}

}  // namespace
}  // namespace vmm::devices
