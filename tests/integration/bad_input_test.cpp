// The vmm binary on bad input: one line on stderr that names the problem, a non-zero status, no
// crash, no guest started. BadInput's need no /dev/kvm: vmm checks its options and opens every host
// file before it opens /dev/kvm (so on a host without KVM they would fail, saying there is none, if
// it did not). bad_input_kvm_test.cpp has what only loading into guest memory finds.
#include <fstream>
#include <vector>

#include "tests/integration/bad_input.hpp"

namespace vmm::testing {
namespace {

TEST_F(BadInput, UnknownFlag) {
  expect_error({"--kernel", "k", "--frobnicate"}, 2, "--frobnicate");
}

TEST_F(BadInput, MissingKernelFlag) {
  expect_error({"--cpus", "2"}, 2, "--kernel is required");
}

TEST_F(BadInput, BadMemorySize) {
  expect_error({"--kernel", "k", "--memory", "lots"}, 2, "--memory lots: not a size");
}

TEST_F(BadInput, TooLittleMemory) {
  expect_error({"--kernel", "k", "--memory", "1M"}, 1, "too little memory");
}

TEST_F(BadInput, TooManyCpus) {
  expect_error({"--kernel", "k", "--cpus", "100000"}, 1, "--cpus");
}

TEST_F(BadInput, KernelThatDoesNotExist) {
  expect_error({"--kernel", "/nonexistent/bzImage"}, 1,
               "--kernel /nonexistent/bzImage: No such file or directory");
}

TEST_F(BadInput, KernelThatIsADirectory) {
  expect_error({"--kernel", "/"}, 1, "--kernel /: Is a directory");
}

TEST_F(BadInput, KernelThatIsNotAKernel) {
  const std::string path = file("text", std::vector<uint8_t>(4096, 'x'));
  expect_error({"--kernel", path}, 1, "not a Linux kernel");
}

TEST_F(BadInput, TruncatedKernel) {
  const std::string image = test_guest_image("hello");
  std::ifstream in(image, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1200u);
  bytes.resize(1100);  // the header survives, the payload doesn't
  expect_error({"--kernel", file("truncated", bytes)}, 1, "truncated");
}

TEST_F(BadInput, DiskThatDoesNotExist) {
  expect_error({"--kernel", test_guest_image("hello"), "--disk", "/nonexistent/root.img"}, 1,
               "--disk /nonexistent/root.img: No such file or directory");
}

TEST_F(BadInput, VsockSocketInAMissingDirectory) {
  expect_error({"--kernel", test_guest_image("hello"), "--vsock", "cid=3,socket=/nonexistent/v"}, 1,
               "--vsock cid=3,socket=/nonexistent/v: /nonexistent: No such file or directory");
}

TEST_F(BadInput, CmdlineWithAppend) {
  expect_error({"--kernel", "k", "--cmdline", "quiet", "--append", "rw"}, 2,
               "--append and --cmdline");
}

TEST_F(BadInput, UnwritableSerialFile) {
  expect_error({"--kernel", test_guest_image("hello"), "--serial", "file:/nonexistent/dir/log"}, 1,
               "--serial file:/nonexistent/dir/log: No such file or directory");
}

}  // namespace
}  // namespace vmm::testing
