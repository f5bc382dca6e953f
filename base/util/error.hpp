#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace vmm {

// The one exception type that crosses unit boundaries. Its message is a complete, user-facing
// sentence fragment that names the thing that failed ("--kernel /x: No such file or directory").
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "<what>: <strerror(err)>", for failed system calls.
std::string errno_message(const std::string& what, int err);

// Throws Error("<what>: <strerror(errno)>"); call right after the failing system call.
[[noreturn]] void throw_errno(const std::string& what);

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace vmm
