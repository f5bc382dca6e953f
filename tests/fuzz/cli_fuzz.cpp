// The command line: argv from the input (split on NUL bytes) through parse_command_line() and,
// when it yields options, validate_config(). Bad input must come back as a usage error or a
// vmm::Error from validation, never as a crash or any other exception.

#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_guest.hpp"
#include "vmm/cli/options.hpp"
#include "vmm/machine.hpp"

namespace vmm::fuzz {
namespace {

void run(Reader& in) {
  std::vector<std::string> args;
  std::string arg;
  for (const uint8_t byte : in.bytes(in.remaining())) {
    if (byte == 0) {
      args.push_back(std::move(arg));
      arg.clear();
    } else {
      arg.push_back(static_cast<char>(byte));
    }
  }
  if (!arg.empty() || args.empty()) args.push_back(std::move(arg));

  const cli::ParseResult result = cli::parse_command_line(args);
  if (!result.options) {
    VMM_FUZZ_CHECK(result.exit_status == 0 ? result.error.empty() : !result.error.empty(),
                   "exit status %d with error '%s'", result.exit_status, result.error.c_str());
    return;
  }
  VMM_FUZZ_CHECK(result.exit_status == 0 && result.error.empty(), "options with an error");
  try {
    validate_config(result.options->machine);
  } catch (const Error&) {
    // A config that cannot work, with a message naming the field: expected.
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
