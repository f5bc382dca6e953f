#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/integration/process.hpp"

namespace vmm::testing {

// Why guests can't be booted on this machine ("/dev/kvm: No such file or directory"), or "" when
// they can.
std::string kvm_unavailable_reason();

// A liveness bound (never a speed check) stretched by VMM_TEST_TIME_SCALE, a whole number the
// nested lab sets: there every exit costs tens of microseconds and vmm itself runs under TCG.
std::chrono::milliseconds liveness_bound(std::chrono::milliseconds bound);

// How many machines the create-and-destroy leak check makes: 1000, or
// VMM_TEST_CREATE_DESTROY_ROUNDS, which the nested lab sets lower (a machine costs it ~60 ms there,
// many times that under ASan).
long create_destroy_rounds();

// <build>/guest-tests/<name>.bzImage.
std::string test_guest_image(const std::string& name);

struct GuestRun {
  std::string kernel;
  uint32_t cpus = 1;
  std::string cmdline;
  uint32_t vmm_timeout_seconds = 0;  // vmm's own --timeout; 0: not passed
  // --debug-exit: the test guests end through the exit port, with their status.
  bool debug_exit = true;
  // Our deadline for the vmm process, so a hung vmm fails the test instead of hanging it.
  std::chrono::milliseconds host_timeout{60000};
  // Appended after the options above (e.g. --disk ...); `{}` lets designated initializers omit it.
  std::vector<std::string> extra_args{};
};

// Runs `vmm --kernel ... --cpus N --memory 64M --serial stdio [--cmdline ...] [--timeout S]
// [--debug-exit] [extra_args...]`.
ProcessResult run_vmm(const GuestRun& run);

// The whole story of a run, for assertion messages.
std::string describe(const ProcessResult& result);

}  // namespace vmm::testing
