#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace vmm::testing {

// How a child process ended, with everything it wrote.
struct ProcessResult {
  bool exited = false;  // ended through exit(): `exit_status` is valid
  int exit_status = -1;
  int signal = 0;          // the signal that ended it, when it didn't exit
  bool timed_out = false;  // we killed it at the deadline
  std::string out;
  std::string err;
};

// Runs argv[0] (a path, no PATH search) with stdin from /dev/null, collecting stdout and stderr,
// and SIGKILLs it when it outlives `timeout`. Throws std::runtime_error when it can't be started.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);
// The same with the child's stdout on `stdout_fd` (kept open by the caller; `out` stays empty):
// for a reader that does not read.
ProcessResult run_process(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                          int stdout_fd);

}  // namespace vmm::testing
