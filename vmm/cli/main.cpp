// The vmm command: parse the command line, build a Machine, run it, exit with its status.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <optional>
#include <thread>

#include "vmm/cli/control_client.hpp"
#include "vmm/cli/options.hpp"
#include "vmm/machine.hpp"
#include "vmm/machine/snapshot_files.hpp"
#include "vmm/security/jail.hpp"
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

// vmm run: the first Ctrl-C (SIGINT) goes to the command, the next stops the guest. SIGINT is
// blocked in every thread (before the machine makes any) and taken by a thread of its own.
class InterruptForwarder {
 public:
  // Before the machine's threads exist: they inherit the mask.
  static void block_interrupts() {
    sigset_t set = interrupt_set();
    ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }

  InterruptForwarder(vmm::Machine& machine, bool confine)
      : thread_([this, &machine, confine] { forward(machine, confine); }) {}
  InterruptForwarder(const InterruptForwarder&) = delete;
  InterruptForwarder& operator=(const InterruptForwarder&) = delete;
  ~InterruptForwarder() {
    done_ = true;
    ::pthread_kill(thread_.native_handle(), SIGINT);
    thread_.join();
  }

 private:
  static sigset_t interrupt_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    return set;
  }

  void forward(vmm::Machine& machine, bool confine) {
    if (confine) vmm::security::confine_thread(vmm::security::ThreadKind::kMain);
    const sigset_t set = interrupt_set();
    int interrupts = 0;
    while (true) {
      const int signal = ::sigwaitinfo(&set, nullptr);
      if (done_) return;
      if (signal != SIGINT) continue;
      if (++interrupts == 1) {
        spdlog::info("Ctrl-C: passed to the command (again: stop the guest)");
        machine.signal_command(SIGINT);
      } else {
        spdlog::info("Ctrl-C again: stopping the guest");
        machine.stop();
      }
    }
  }

  std::atomic<bool> done_{false};
  std::thread thread_;
};

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

  const bool runs_command = !options.restore && options.machine.command;
  if (runs_command) InterruptForwarder::block_interrupts();
  try {
    // Before the machine opens anything or starts a thread: a fork of a single thread.
    if (options.jail) {
      std::optional<int> status;
      if (options.restore) {
        // A restore's machine is the snapshot's (its disks, unless given again): read it here.
        const std::string& dir = options.restore->snapshot_dir;
        const vmm::SnapshotManifest manifest = vmm::read_snapshot_files(dir, "--restore").manifest;
        status = vmm::security::enter_jail(*options.jail,
                                           vmm::restored_config(*options.restore, manifest), dir);
      } else {
        status = vmm::security::enter_jail(*options.jail, options.machine);
      }
      if (status) return *status;
    }
    auto machine = options.restore ? vmm::Machine::restore(*options.restore)
                                   : vmm::Machine::create(options.machine);
    machine->start();
    std::optional<InterruptForwarder> forwarder;
    if (runs_command) forwarder.emplace(*machine, machine->config().seccomp);
    confine_main_thread(machine->config());
    const vmm::MachineExit exit = *machine->wait();
    forwarder.reset();
    if (exit.reason == vmm::MachineExit::Reason::kError ||
        (exit.ran_command && exit.reason != vmm::MachineExit::Reason::kCommandExit)) {
      std::fprintf(stderr, "vmm: %s\n", exit.describe().c_str());
    } else {
      spdlog::info("{}", exit.describe());
    }
    return exit.exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vmm: %s\n", e.what());
    // vmm run: whatever failed, the command's status never came.
    return runs_command ? vmm::kExitStatusNoCommandStatus : vmm::kExitStatusError;
  }
}
