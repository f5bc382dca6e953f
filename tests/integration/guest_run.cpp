#include "tests/integration/guest_run.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/core.h>

namespace vmm::testing {

std::string kvm_unavailable_reason() {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return fmt::format("/dev/kvm: {}", std::strerror(errno));
  ::close(fd);
  return "";
}

namespace {
// The positive whole number in environment variable `name`, or `fallback`.
long positive_from_env(const char* name, long fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  return end != text && *end == '\0' && value > 0 ? value : fallback;
}
}  // namespace

std::chrono::milliseconds liveness_bound(std::chrono::milliseconds bound) {
  return bound * positive_from_env("VMM_TEST_TIME_SCALE", 1);
}

long create_destroy_rounds() {
  return positive_from_env("VMM_TEST_CREATE_DESTROY_ROUNDS", 1000);
}

std::string test_guest_image(const std::string& name) {
  return fmt::format("{}/{}.bzImage", VMM_TEST_GUEST_DIR, name);
}

ProcessResult run_vmm(const GuestRun& run) {
  std::vector<std::string> argv = {
      VMM_BINARY, "--kernel", run.kernel, "--cpus", std::to_string(run.cpus),
      "--memory", "64M",      "--serial", "stdio"};
  if (!run.cmdline.empty()) {
    argv.insert(argv.end(), {"--cmdline", run.cmdline});
  }
  if (run.vmm_timeout_seconds != 0) {
    argv.insert(argv.end(), {"--timeout", std::to_string(run.vmm_timeout_seconds)});
  }
  if (run.debug_exit) argv.push_back("--debug-exit");
  argv.insert(argv.end(), run.extra_args.begin(), run.extra_args.end());
  return run_process(argv, liveness_bound(run.host_timeout));
}

std::string describe(const ProcessResult& result) {
  std::string how = result.timed_out ? "killed at the test's deadline"
                    : result.exited  ? fmt::format("exit status {}", result.exit_status)
                                     : fmt::format("killed by signal {}", result.signal);
  return fmt::format("vmm: {}\n--- serial (stdout) ---\n{}\n--- stderr ---\n{}", how, result.out,
                     result.err);
}

}  // namespace vmm::testing
