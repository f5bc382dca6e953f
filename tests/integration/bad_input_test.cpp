// The vmm binary on bad input: one line on stderr that names the problem, a non-zero status, no
// crash, no guest started. BadInput's need no /dev/kvm (flags are checked first); BadInputWithKvm's
// do.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <vector>

#include "tests/integration/guest_run.hpp"
#include "tests/integration/process.hpp"

namespace vmm::testing {
namespace {

constexpr std::chrono::milliseconds kDeadline{30000};

class BadInput : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& path : files_) ::unlink(path.c_str());
  }

  std::string file(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path =
        ::testing::TempDir() + "/vmm_bad_input_" + std::to_string(::getpid()) + "_" + name;
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    files_.push_back(path);
    return path;
  }

  // Runs vmm and expects `status` with exactly one stderr line containing `fragment`.
  void expect_error(std::vector<std::string> args, int status, const std::string& fragment) {
    args.insert(args.begin(), VMM_BINARY);
    const ProcessResult r = run_process(args, kDeadline);
    ASSERT_TRUE(r.exited) << describe(r);
    EXPECT_EQ(r.exit_status, status) << describe(r);
    EXPECT_NE(r.err.find(fragment), std::string::npos) << describe(r);
    EXPECT_EQ(r.err.rfind("vmm: ", 0), 0u) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
    EXPECT_TRUE(r.out.empty()) << describe(r);
  }

  std::vector<std::string> files_;
};

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

// vmm opens /dev/kvm before it reads the kernel and the other files: without KVM these would
// see that error instead. Skipped in SetUp, which ends the test (a skip in a helper would not).
class BadInputWithKvm : public BadInput {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "needs /dev/kvm: " << why;
    }
  }
};

TEST_F(BadInputWithKvm, KernelThatDoesNotExist) {
  expect_error({"--kernel", "/nonexistent/bzImage"}, 1,
               "--kernel /nonexistent/bzImage: No such file or directory");
}

TEST_F(BadInputWithKvm, KernelThatIsADirectory) {
  expect_error({"--kernel", "/"}, 1, "--kernel /: Is a directory");
}

TEST_F(BadInputWithKvm, KernelThatIsNotAKernel) {
  const std::string path = file("text", std::vector<uint8_t>(4096, 'x'));
  expect_error({"--kernel", path}, 1, "not a Linux kernel");
}

TEST_F(BadInputWithKvm, TruncatedKernel) {
  const std::string image = test_guest_image("hello");
  std::ifstream in(image, std::ios::binary);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
  ASSERT_GT(bytes.size(), 1200u);
  bytes.resize(1100);  // the header survives, the payload doesn't
  expect_error({"--kernel", file("truncated", bytes)}, 1, "truncated");
}

TEST_F(BadInputWithKvm, InitrdThatDoesNotFit) {
  const std::string initrd = file("big-initrd", std::vector<uint8_t>(20 << 20, 0));
  expect_error({"--kernel", test_guest_image("hello"), "--memory", "16M", "--initrd", initrd}, 1,
               "does not fit");
}

TEST_F(BadInputWithKvm, UnwritableSerialFile) {
  expect_error({"--kernel", test_guest_image("hello"), "--serial", "file:/nonexistent/dir/log"}, 1,
               "--serial file:/nonexistent/dir/log: No such file or directory");
}

}  // namespace
}  // namespace vmm::testing
