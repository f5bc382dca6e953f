// The fixture of the bad-input tests: runs the vmm binary and expects one line on stderr that
// names the problem, a non-zero status, no crash and no guest output.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "tests/integration/guest_run.hpp"
#include "tests/integration/process.hpp"

namespace vmm::testing {

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

  // Runs vmm (with `environment`'s NAME=VALUE settings added to its environment) and expects
  // `status` with exactly one stderr line containing `fragment`.
  void expect_error(std::vector<std::string> args, int status, const std::string& fragment,
                    const std::vector<std::string>& environment = {}) {
    args.insert(args.begin(), VMM_BINARY);
    if (!environment.empty()) {
      args.insert(args.begin(), environment.begin(), environment.end());
      args.insert(args.begin(), "/usr/bin/env");
    }
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

}  // namespace vmm::testing
