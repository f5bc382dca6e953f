#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>

#include "vmm/machine_config.hpp"

namespace vmm::testing {

// What a guest wrote to its console, through SerialConfig::kCallback (which runs on the machine's
// event loop thread): the tests wait for lines in it.
class ConsoleCapture {
 public:
  SerialConfig config() {
    SerialConfig serial;
    serial.mode = SerialConfig::Mode::kCallback;
    serial.callback = [this](std::span<const uint8_t> bytes) {
      const std::lock_guard lock(mutex_);
      text_.append(bytes.begin(), bytes.end());
      changed_.notify_all();
    };
    return serial;
  }
  // True once `needle` appeared; false if `timeout` passed first.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout,
                             [&] { return text_.find(needle) != std::string::npos; });
  }
  bool has(const std::string& needle) const { return text().find(needle) != std::string::npos; }
  std::string text() const {
    const std::lock_guard lock(mutex_);
    return text_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string text_;
};

}  // namespace vmm::testing
