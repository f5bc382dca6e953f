#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace vmm {

// The host's end of a command's control port (MachineConfig::command, `vmm run`): the lines of
// boot/initramfs/init/init_abi.h. The guest writes them, so a line is checked before it counts:
// only "exit N\n" with N in 0..255 does; anything else, an overlong line included, is dropped.
class CommandControl {
 public:
  static constexpr size_t kMaxLineBytes = 32;

  // Bytes from the guest, in order. The command's exit status once its "exit N" line is whole;
  // nullopt before (and after: the first status is the one).
  std::optional<int> feed(std::span<const uint8_t> bytes);
  // What asks the guest's init to send `signal` to the command's process group.
  static std::string signal_line(int signal);

 private:
  std::string line_;
  bool overlong_ = false;  // the current line passed kMaxLineBytes: dropped when it ends
  bool exited_ = false;
};

}  // namespace vmm
