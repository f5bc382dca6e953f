// machine_bench: times libvmm's C++ API from inside one process, as a sandbox builder uses it.
//
//   machine_bench --kernel IMAGE [--runs N] [--machines M] [--threads T] [--memory MiB]
//                 [--cmdline TEXT]
//
// IMAGE is a test guest that prints on COM1 and exits through the debug-exit port with status 0
// (guest-tests' hello.bzImage with "exit=0"). Each machine has 1 vCPU, the console to a callback.
//
// Latency, N machines one after the other (the first is the process's first machine: cold):
//   LATENCY run=I create_ms=.. start_ms=.. first_byte_ms=.. exit_ms=.. destroy_ms=..
// every time in ms since t0, taken just before Machine::create: create() returned, start()
// returned, the console callback saw the guest's first byte, wait() returned the guest's exit, the
// Machine was destroyed (its threads joined, fds closed, memory unmapped).
//
// Rates, M machines each, from T threads in parallel (M/T per thread) and from one:
//   RATE what=full|create threads=T machines=M seconds=.. per_sec=.. cpu_ms_per_machine=..
// full: create + start + wait for the guest's exit + destroy; create: create + destroy, never
// started. cpu_ms_per_machine: the process's CPU time (user + system, every thread's) over the M
// machines, divided by M: the time not spent waiting.
//
// Any machine that does not exit with status 0 after printing is a failure: the program says
// which on stderr and exits 1.
#include <vmm/machine.hpp>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

struct Options {
  std::string kernel;
  std::string cmdline = "console=ttyS0 exit=0";
  int runs = 20;
  int machines = 50;
  int threads = 2;
  uint64_t memory_mib = 128;
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --kernel IMAGE [--runs N] [--machines M] [--threads T] [--memory MiB] "
               "[--cmdline TEXT]\n",
               argv0);
  std::exit(2);
}

int positive(const char* flag, const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || value <= 0 || value > 1000000) {
    std::fprintf(stderr, "machine_bench: %s %s: want a positive number\n", flag, text);
    std::exit(2);
  }
  return static_cast<int>(value);
}

Options parse(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* value = argv[++i];
    if (flag == "--kernel") {
      options.kernel = value;
    } else if (flag == "--cmdline") {
      options.cmdline = value;
    } else if (flag == "--runs") {
      options.runs = positive("--runs", value);
    } else if (flag == "--machines") {
      options.machines = positive("--machines", value);
    } else if (flag == "--threads") {
      options.threads = positive("--threads", value);
    } else if (flag == "--memory") {
      options.memory_mib = static_cast<uint64_t>(positive("--memory", value));
    } else {
      usage(argv[0]);
    }
  }
  if (options.kernel.empty()) usage(argv[0]);
  return options;
}

// What one machine's console saw. The callback runs on the machine's vCPU thread.
struct Console {
  std::atomic<int64_t> first_byte_ns{0};  // steady_clock, since its epoch; 0: nothing yet
  std::atomic<uint64_t> bytes{0};
};

vmm::MachineConfig make_config(const Options& options, Console& console) {
  vmm::MachineConfig config;
  config.kernel_path = options.kernel;
  config.cmdline = options.cmdline;
  config.cpus = 1;
  config.memory_bytes = options.memory_mib << 20;
  config.timeout_seconds = 30;  // a wedged guest ends as kTimeout, a failure, not a hang
  config.debug_exit = true;     // the test guest ends through the exit port
  config.serial.mode = vmm::SerialConfig::Mode::kCallback;
  config.serial.callback = [&console](std::span<const uint8_t> bytes) {
    if (bytes.empty()) return;
    int64_t none = 0;
    console.first_byte_ns.compare_exchange_strong(none, Clock::now().time_since_epoch().count(),
                                                  std::memory_order_relaxed);
    console.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
  };
  return config;
}

// Throws unless the guest printed something and exited through the debug-exit port with 0.
void check_exit(const vmm::MachineExit& exit, const Console& console) {
  if (exit.reason != vmm::MachineExit::Reason::kDebugExit || exit.debug_code != 0) {
    throw std::runtime_error("the guest ended with " + exit.describe());
  }
  if (console.bytes.load() == 0) throw std::runtime_error("the guest printed nothing");
}

void latency(const Options& options) {
  for (int run = 0; run < options.runs; ++run) {
    Console console;
    const vmm::MachineConfig config = make_config(options, console);
    const Clock::time_point t0 = Clock::now();
    std::unique_ptr<vmm::Machine> machine = vmm::Machine::create(config);
    const Clock::time_point created = Clock::now();
    machine->start();
    const Clock::time_point started = Clock::now();
    const std::optional<vmm::MachineExit> exit = machine->wait();
    const Clock::time_point exited = Clock::now();
    check_exit(*exit, console);
    machine.reset();
    const Clock::time_point destroyed = Clock::now();
    const Clock::time_point first_byte{Clock::duration{console.first_byte_ns.load()}};
    std::printf(
        "LATENCY run=%d create_ms=%.3f start_ms=%.3f first_byte_ms=%.3f exit_ms=%.3f "
        "destroy_ms=%.3f\n",
        run, ms_between(t0, created), ms_between(t0, started), ms_between(t0, first_byte),
        ms_between(t0, exited), ms_between(t0, destroyed));
  }
}

// One machine's whole life; with `boot` false it is created and destroyed, never started.
void one_machine(const Options& options, bool boot) {
  Console console;
  std::unique_ptr<vmm::Machine> machine = vmm::Machine::create(make_config(options, console));
  if (!boot) return;
  const vmm::MachineExit exit = machine->run();
  check_exit(exit, console);
}

// User + system time of the whole process, its ended threads included.
double cpu_ms() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// M machines split over T threads.
void rate(const Options& options, int threads, bool boot) {
  std::atomic<int> next{0};
  std::mutex error_mutex;
  std::string error;
  auto worker = [&] {
    while (next.fetch_add(1) < options.machines) {
      try {
        one_machine(options, boot);
      } catch (const std::exception& e) {
        const std::lock_guard lock(error_mutex);
        if (error.empty()) error = e.what();
        next.store(options.machines);  // the others stop after their current machine
      }
    }
  };
  const double cpu0 = cpu_ms();
  const Clock::time_point t0 = Clock::now();
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  for (std::thread& thread : pool) thread.join();
  const double seconds = ms_between(t0, Clock::now()) / 1000;
  const double cpu = cpu_ms() - cpu0;
  if (!error.empty()) throw std::runtime_error(error);
  std::printf(
      "RATE what=%s threads=%d machines=%d seconds=%.3f per_sec=%.1f cpu_ms_per_machine=%.2f\n",
      boot ? "full" : "create", threads, options.machines, seconds, options.machines / seconds,
      cpu / options.machines);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  try {
    latency(options);
    std::fflush(stdout);
    for (const bool boot : {true, false}) {
      rate(options, 1, boot);
      if (options.threads > 1) rate(options, options.threads, boot);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "machine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
