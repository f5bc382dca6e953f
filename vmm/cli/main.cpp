// The vmm command: parse the command line, build a Machine, run it, exit with its status.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "vmm/cli/control_client.hpp"
#include "vmm/cli/options.hpp"
#include "vmm/machine.hpp"
#include "vmm/security/seccomp_filter.hpp"

namespace {

// The machine's own threads confine themselves; the main thread is the command's to confine (the
// library leaves its caller's thread alone). It only waits and tears the machine down, but an
// unfiltered thread in the process would be a way around the others' filters.
void confine_main_thread(const vmm::MachineConfig& config) {
  if (!config.seccomp) return;
#if defined(__SANITIZE_ADDRESS__)
  // LeakSanitizer runs on this thread at exit and needs ptrace and /proc.
  spdlog::debug("seccomp: the main thread is not confined in a sanitizer build");
#else
  vmm::security::confine_thread(vmm::security::ThreadKind::kMain);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const auto parsed = vmm::cli::parse_command_line(args);
  if (!parsed.options) {
    if (!parsed.output.empty()) std::fputs(parsed.output.c_str(), stdout);
    if (!parsed.error.empty()) std::fprintf(stderr, "vmm: %s\n", parsed.error.c_str());
    return parsed.exit_status;
  }
  const auto& options = *parsed.options;
  if (options.snapshot) {
    return vmm::cli::request_snapshot(options.snapshot->api_socket, options.snapshot->directory,
                                      options.snapshot->stay_paused);
  }

  auto logger = spdlog::stderr_color_mt("vmm");
  logger->set_pattern("vmm: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(options.log_level));

  try {
    auto machine = options.restore ? vmm::Machine::restore(*options.restore)
                                   : vmm::Machine::create(options.machine);
    machine->start();
    confine_main_thread(machine->config());
    const vmm::MachineExit exit = *machine->wait();
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
