#include "vmm/machine/command_control.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <string_view>

#include "base/util/parse_number.hpp"

namespace vmm {

namespace {

std::optional<int> parse_exit_line(std::string_view line) {
  constexpr std::string_view kPrefix = "exit ";
  if (line.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  const auto status = parse_number<int>(line.substr(kPrefix.size()));
  if (!status || *status < 0 || *status > 255) return std::nullopt;
  return status;
}

}  // namespace

std::optional<int> CommandControl::feed(std::span<const uint8_t> bytes) {
  std::optional<int> status;
  for (const uint8_t byte : bytes) {
    if (byte != '\n') {
      if (line_.size() < kMaxLineBytes) {
        line_.push_back(static_cast<char>(byte));
      } else {
        overlong_ = true;
      }
      continue;
    }
    const std::optional<int> parsed = overlong_ ? std::nullopt : parse_exit_line(line_);
    if (!parsed) spdlog::debug("command control: dropped a line the guest sent: {:?}", line_);
    if (parsed && !exited_) {
      exited_ = true;
      status = parsed;
    }
    line_.clear();
    overlong_ = false;
  }
  return status;
}

std::string CommandControl::signal_line(int signal) {
  return fmt::format("signal {}\n", signal);
}

}  // namespace vmm
