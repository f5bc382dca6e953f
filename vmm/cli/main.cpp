// The vmm command: parse the command line, build a Machine, run it, exit with its status.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "vmm/cli/options.hpp"
#include "vmm/machine.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const auto parsed = vmm::cli::parse_command_line(args);
  if (!parsed.options) {
    if (!parsed.output.empty()) std::fputs(parsed.output.c_str(), stdout);
    if (!parsed.error.empty()) std::fprintf(stderr, "vmm: %s\n", parsed.error.c_str());
    return parsed.exit_status;
  }
  const auto& options = *parsed.options;

  auto logger = spdlog::stderr_color_mt("vmm");
  logger->set_pattern("vmm: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(options.log_level));

  try {
    auto machine = vmm::Machine::create(options.machine);
    const vmm::MachineExit exit = machine->run();
    if (exit.reason == vmm::MachineExit::Reason::kError) {
      std::fprintf(stderr, "vmm: %s\n", exit.message.c_str());
    } else {
      spdlog::info("{}", exit.describe());
    }
    return exit.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmm: %s\n", e.what());
    return vmm::kExitStatusError;
  }
}
