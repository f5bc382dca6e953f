// Boots a kernel with libvmm's C++ API: the guest's console goes to a callback that prints it,
// the run is bounded by a timeout, and the program ends with the machine's exit status, as the
// vmm command would. Build: see CMakeLists.txt here (find_package(vmm), target vmm::vmm).
//
//   boot_cpp [--debug-exit] KERNEL [CMDLINE]
//
// --debug-exit is for test guests: a byte V they write to I/O port 0xf4 ends the machine with exit
// status V (the guest chooses the status, so it is off unless asked for).
#include <vmm/machine.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <span>
#include <string_view>

int main(int argc, char** argv) {
  const char* program = argv[0];
  const bool debug_exit = argc > 1 && std::string_view(argv[1]) == "--debug-exit";
  if (debug_exit) {
    --argc;
    ++argv;
  }
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s [--debug-exit] KERNEL [CMDLINE]\n", program);
    return 2;
  }
  vmm::MachineConfig config;
  config.debug_exit = debug_exit;
  config.kernel_path = argv[1];
  if (argc == 3) config.cmdline = argv[2];
  config.memory_bytes = uint64_t{128} << 20;
  config.timeout_seconds = 60;  // the machine stops itself (kTimeout) after this
  config.serial.mode = vmm::SerialConfig::Mode::kCallback;
  // Called on a vCPU thread with what the guest wrote to its serial port.
  config.serial.callback = [](std::span<const uint8_t> bytes) {
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
    std::fflush(stdout);
  };

  try {
    auto machine = vmm::Machine::create(config);
    machine->start();
    // The machine runs on threads of its own; this thread could do other work meanwhile.
    std::optional<vmm::MachineExit> exit = machine->wait(std::chrono::seconds(90));
    if (!exit) {
      machine->stop();
      exit = machine->wait();
    }
    std::printf("\nboot_cpp: %s (exit status %d)\n", exit->describe().c_str(), exit->exit_status());
    return exit->exit_status();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "boot_cpp: %s\n", e.what());
    return 1;
  }
}
