// The console never blocks a vCPU (issue 11): a guest that prints into a pipe nobody reads still
// ends with --timeout, and what reached the pipe is the guest's output, in order.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "base/util/unique_fd.hpp"
#include "tests/integration/guest_run.hpp"

namespace vmm::testing {
namespace {

class ConsoleGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }
};

// Everything in the pipe now (its write end stays open: stop at "empty", not at EOF).
std::string read_what_is_there(int fd) {
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(n));
  return text;
}

TEST_F(ConsoleGuest, TimeoutEndsAGuestPrintingIntoAPipeNobodyReads) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  // vmm gets its own, blocking, file description of the pipe, as a shell's `vmm | reader` would.
  UniqueFd vmm_stdout(::open(("/proc/self/fd/" + std::to_string(fds[1])).c_str(), O_WRONLY));
  ASSERT_TRUE(vmm_stdout.valid());
  // One page: vmm's old console write() blocked a vCPU as soon as the pipe was full, and the
  // guest fills a page within the timeout even where every exit is slow (the lab's L1).
  ASSERT_GT(::fcntl(fds[0], F_SETPIPE_SZ, 4096), 0);

  const std::vector<std::string> argv = {
      VMM_BINARY, "--kernel",  test_guest_image("console"), "--memory",  "64M", "--serial",
      "stdio",    "--cmdline", "flood=1048576 burst=4096",  "--timeout", "2",   "--debug-exit"};
  const auto start = std::chrono::steady_clock::now();
  // A vCPU blocked on the pipe would keep vmm from ever exiting: the deadline kills it.
  ProcessResult r = run_process(argv, liveness_bound(std::chrono::seconds(30)), vmm_stdout.get());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  r.out = read_what_is_there(read_end.get());
  const std::string head = r.out.substr(0, 200);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 124) << "vmm: exit status " << r.exit_status << "\n" << r.err;
  EXPECT_GE(elapsed, std::chrono::seconds(2));

  // The guest filled the pipe and vmm's buffer (so vmm was left holding output at the end: the
  // warning), and the pipe holds the guest's output in order.
  EXPECT_NE(r.err.find("bytes of console output not written"), std::string::npos) << r.err;
  const std::string marker = "console: flooding 1048576 bytes\r\n";
  const size_t at = r.out.find(marker);
  ASSERT_NE(at, std::string::npos) << "the pipe starts: " << head;
  const size_t first = at + marker.size();
  for (size_t i = first; i < r.out.size(); ++i) {
    ASSERT_EQ(r.out[i], static_cast<char>('a' + (i - first) % 26)) << "byte " << i - first;
  }
}

}  // namespace
}  // namespace vmm::testing
