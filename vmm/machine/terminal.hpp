#pragma once

#include <memory>

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

}  // namespace vmm
