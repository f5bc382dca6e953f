// ConsoleOutput: the guest's console output leaves the UART's buffer on the event loop, never
// blocking, and back-pressure from a stuck reader reaches the guest as a busy transmitter.
#include "vmm/machine/terminal.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/devices/fakes.hpp"

namespace vmm {
namespace {

using devices::Serial16550;

constexpr uint64_t kThr = 0, kLsr = 5;
constexpr uint8_t kLsrThre = 0x20;

struct Pipe {
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    read_end = UniqueFd(fds[0]);
    write_end = UniqueFd(fds[1]);
  }
  std::string read_available() const {
    std::string text;
    char buffer[4096];
    const int flags = ::fcntl(read_end.get(), F_GETFL);
    ::fcntl(read_end.get(), F_SETFL, flags | O_NONBLOCK);
    ssize_t n;
    while ((n = ::read(read_end.get(), buffer, sizeof(buffer))) > 0) {
      text.append(buffer, static_cast<size_t>(n));
    }
    ::fcntl(read_end.get(), F_SETFL, flags);
    return text;
  }
  UniqueFd read_end, write_end;
};

class ConsoleOutputTest : public ::testing::Test {
 protected:
  bool transmitter_busy() { return (devices::testing::inb(uart, kLsr) & kLsrThre) == 0; }
  // The guest: writes a FIFO's worth per THRE until the transmitter is busy or `limit` is sent.
  void guest_writes(size_t limit) {
    while (sent.size() < limit && !transmitter_busy()) {
      for (size_t i = 0; i < Serial16550::kFifoSize && sent.size() < limit; ++i) {
        const char c = static_cast<char>('a' + sent.size() * 7 % 26);
        devices::testing::outb(uart, kThr, static_cast<uint8_t>(c));
        sent.push_back(c);
      }
    }
  }
  void run_loop_briefly() {
    for (int i = 0; i < 10; ++i) loop.run_once(1);
  }

  EventLoop loop;
  devices::testing::FakeInterruptLine irq;
  Serial16550 uart{irq};
  std::string sent;
};

TEST_F(ConsoleOutputTest, StuckPipeBacksUpIntoTheUartAndNothingIsLost) {
  Pipe pipe;
  auto output = ConsoleOutput::to_fd(loop, uart, pipe.write_end.get(), "test pipe");
  output->watch();
  // The caller's fd keeps its flags: the output writes through a description of its own.
  EXPECT_EQ(::fcntl(pipe.write_end.get(), F_GETFL) & O_NONBLOCK, 0);

  // Nobody reads: the pipe fills, then the UART's buffer, then the guest sees a busy transmitter.
  const size_t limit = 8 * Serial16550::kOutputBufferCapacity;
  for (int round = 0; round < 1000 && !transmitter_busy(); ++round) {
    guest_writes(limit);
    run_loop_briefly();
  }
  ASSERT_TRUE(transmitter_busy()) << sent.size() << " bytes sent";
  EXPECT_LT(sent.size(), limit);

  // The reader comes back: EPOLLOUT resumes the drain, the guest goes on, all of it in order.
  std::string received;
  for (int round = 0; round < 10000 && received.size() < limit; ++round) {
    received += pipe.read_available();
    run_loop_briefly();
    guest_writes(limit);
  }
  ASSERT_EQ(received.size(), limit);
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(uart.dropped_output(), 0u);
}

TEST_F(ConsoleOutputTest, FlushGivesUpOnAStuckReaderWithinItsBound) {
  Pipe pipe;
  auto output = ConsoleOutput::to_fd(loop, uart, pipe.write_end.get(), "test pipe");
  output->watch();
  for (int round = 0; round < 1000 && !transmitter_busy(); ++round) {
    guest_writes(SIZE_MAX);
    run_loop_briefly();
  }
  ASSERT_TRUE(transmitter_busy());
  const auto start = std::chrono::steady_clock::now();
  const size_t left = output->flush(std::chrono::milliseconds(100));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GT(left, 0u);
  EXPECT_LT(elapsed, std::chrono::seconds(5));  // a liveness bound: 100 ms without progress
}

TEST_F(ConsoleOutputTest, FlushWritesWhatIsLeftWhenTheReaderKeepsUp) {
  Pipe pipe;
  auto output = ConsoleOutput::to_fd(loop, uart, pipe.write_end.get(), "test pipe");
  output->watch();
  guest_writes(1000);  // the loop has not run: all of it waits in the UART
  EXPECT_EQ(output->flush(), 0u);
  EXPECT_EQ(pipe.read_available(), sent);
}

TEST_F(ConsoleOutputTest, CallbackGetsEverythingInOrderOnTheLoop) {
  std::string received;
  auto output = ConsoleOutput::to_callback(loop, uart, [&](std::span<const uint8_t> bytes) {
    received.append(bytes.begin(), bytes.end());
  });
  output->watch();
  for (int round = 0; round < 100 && sent.size() < 100000; ++round) {
    guest_writes(100000);
    run_loop_briefly();
  }
  output->flush();
  EXPECT_EQ(sent.size(), 100000u);
  EXPECT_TRUE(received == sent);
}

TEST_F(ConsoleOutputTest, AReaderThatHangsUpIsGivenUpAndTheGuestGoesOn) {
  Pipe pipe;
  auto output = ConsoleOutput::to_fd(loop, uart, pipe.write_end.get(), "test pipe");
  output->watch();
  pipe.read_end.reset();
  // EPIPE (SIGPIPE ignored here, as the machine's loop thread blocks it).
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction saved {};
  ::sigaction(SIGPIPE, &ignore, &saved);
  for (int round = 0; round < 100 && sent.size() < 200000; ++round) {
    guest_writes(200000);
    run_loop_briefly();
  }
  ::sigaction(SIGPIPE, &saved, nullptr);
  EXPECT_EQ(sent.size(), 200000u);
}

TEST_F(ConsoleOutputTest, RegularFileIsWrittenAsIs) {
  char path[] = "/tmp/vmm-console-test-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  auto output = ConsoleOutput::to_fd(loop, uart, file.get(), "test file");
  output->watch();
  guest_writes(5000);
  run_loop_briefly();
  EXPECT_EQ(output->flush(), 0u);
  std::string text(5000, '\0');
  EXPECT_EQ(::pread(file.get(), text.data(), text.size(), 0), 5000);
  EXPECT_TRUE(text == sent);
}

}  // namespace
}  // namespace vmm
