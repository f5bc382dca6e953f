#include "vmm/machine/command_control.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <string_view>

namespace vmm {

namespace {

std::optional<int> parse_exit_line(std::string_view line) {
  constexpr std::string_view kPrefix = "exit ";
  if (line.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  const std::string_view number = line.substr(kPrefix.size());
  int status = -1;
  const auto [end, error] = std::from_chars(number.data(), number.data() + number.size(), status);
  if (number.empty() || error != std::errc() || end != number.data() + number.size() ||
      status < 0 || status > 255) {
    return std::nullopt;
  }
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
