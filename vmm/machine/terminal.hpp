#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/event/event_loop.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/legacy/serial_16550.hpp"

namespace vmm {

// Puts a terminal into raw mode so keystrokes go to the guest console unprocessed, and restores
// it on every exit path: destruction, exit(), and fatal signals (SIGINT from Ctrl-C included:
// ISIG stays on so the user can always get out).
class RawTerminal {
 public:
  // nullptr when `fd` is not a terminal.
  static std::unique_ptr<RawTerminal> enter(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  RawTerminal() = default;
};

// A descriptor of its own for writing to `fd` (the caller's, which keeps its flags) from an event
// loop that must never block: for a pipe or a terminal a non-blocking file description of its own
// (reopened through /proc/self/fd; where that fails, `fd`'s description is made non-blocking and
// stays so); for a regular file, a block device or a socket, a duplicate. Throws vmm::Error naming
// `name`.
UniqueFd non_blocking_writer(int fd, const std::string& name);

// The host side of the guest's console output. The UART buffers what the guest transmits (and
// reports its transmitter busy while the buffer is full); this moves it to the sink on the event
// loop's thread, never blocking: a sink that takes no more is written again when epoll says it is
// writable (EPOLLOUT), and meanwhile the guest's driver waits on the UART's LSR. vCPU threads only
// signal an eventfd, when output arrives in an empty buffer.
//
// Sinks: an fd (stdout, --serial file:PATH, a library user's fd), written without blocking; or a
// callback, called on the loop's thread with the bytes in the order the guest wrote them (it must
// not block: it holds up the loop). An fd that fails (EPIPE, ENOSPC, ...) is given up: later output
// is discarded, as if the console were unplugged, and the guest keeps running.
class ConsoleOutput {
 public:
  using Callback = std::function<void(std::span<const uint8_t>)>;
  // Stops a final flush() that makes no progress for this long.
  static constexpr std::chrono::milliseconds kFlushStall{250};
  // Bytes written per wake-up before the handler re-arms itself and lets other fds be served.
  static constexpr size_t kBytesPerWakeup = devices::Serial16550::kOutputBufferCapacity;

  // Writes to `fd`, which stays the caller's and must stay open while this exists. For a pipe or
  // a terminal, this writes through a non-blocking file description of its own (opened through
  // /proc/self/fd), so the caller's fd keeps its flags; where that fails, `fd` itself is made
  // non-blocking (and stays so). A regular file is written as is; a socket with MSG_DONTWAIT.
  static std::unique_ptr<ConsoleOutput> to_fd(EventLoop& loop, devices::Serial16550& uart, int fd,
                                              std::string name);
  // Writes to `fd`, which it owns (the file --serial file:PATH opened).
  static std::unique_ptr<ConsoleOutput> to_owned_fd(EventLoop& loop, devices::Serial16550& uart,
                                                    UniqueFd fd, std::string name);
  // Hands the output to `callback`; an empty one discards it.
  static std::unique_ptr<ConsoleOutput> to_callback(EventLoop& loop, devices::Serial16550& uart,
                                                    Callback callback);
  ~ConsoleOutput();
  ConsoleOutput(const ConsoleOutput&) = delete;
  ConsoleOutput& operator=(const ConsoleOutput&) = delete;

  // Registers with the loop; call before it runs, on the thread that will run it.
  void watch();
  // The loop's thread, after the vCPUs stopped (nothing more arrives): writes what is left,
  // without blocking, and gives up after kFlushStall without progress (a reader that stopped
  // reading must not keep vmm from exiting). Returns the bytes left unwritten.
  size_t flush(std::chrono::milliseconds stall = kFlushStall);

 private:
  enum class Kind { kWrite, kSend, kCallback };
  enum class Outcome { kDone, kWouldBlock, kFailed };
  ConsoleOutput(EventLoop& loop, devices::Serial16550& uart, Kind kind, int fd, std::string name);

  // The handler: writes until the UART's buffer is empty, the sink is full or the budget is spent.
  void drain();
  // Writes from pending_; kDone when all of it went.
  Outcome write_pending();
  void wait_writable(bool on);

  EventLoop& loop_;
  devices::Serial16550& uart_;
  Kind kind_;
  int fd_ = -1;                 // the sink (kWrite, kSend)
  UniqueFd owned_fd_;           // fd_ when it is ours
  Callback callback_;           // kCallback
  std::string name_;            // for messages
  EventFd wake_;                // the UART's output notifier
  bool watched_ = false;        // wake_ and fd_ registered
  bool registered_fd_ = false;  // fd_ is in the loop (only once it was full: regular files
                                // can't be)
  bool waiting_writable_ = false;
  bool failed_ = false;  // the sink failed: discard
  // Taken from the UART, not yet written (all of it is at chunk_'s end).
  std::array<uint8_t, 4096> chunk_{};
  std::span<const uint8_t> pending_;
};

}  // namespace vmm
