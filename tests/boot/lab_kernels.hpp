#pragma once

// The lab's kernel cache (guest-tests/linux/fetch-kernels.sh's OUTDIR: cloud/ and generic/, each
// with vmlinuz, version and lib/modules/<release>/) for the tests that check vmm against real
// Debian kernels. scripts/test.sh fetches it before the unit stage and names it in
// $VMM_LAB_KERNELS; without the variable (a developer's plain ctest) those tests skip, saying so.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace vmm::boot::testing {

class LabKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("VMM_LAB_KERNELS");
    if (dir == nullptr || *dir == '\0') {
      GTEST_SKIP() << "VMM_LAB_KERNELS is not set: the real Debian kernels are not here "
                      "(scripts/test.sh sets it; by hand: guest-tests/linux/fetch-kernels.sh "
                      "build/lab/kernels, then VMM_LAB_KERNELS=$PWD/build/lab/kernels)";
    }
    kernels_ = dir;
    // Set means wanted: a wrong path is a failure, not a skip.
    ASSERT_TRUE(std::filesystem::is_directory(kernels_ + "/cloud"))
        << "VMM_LAB_KERNELS=" << kernels_ << " has no cloud/";
    ASSERT_TRUE(std::filesystem::is_directory(kernels_ + "/generic"))
        << "VMM_LAB_KERNELS=" << kernels_ << " has no generic/";
  }

  // "<cache>/<flavour>/<file>", e.g. file("cloud", "vmlinuz").
  std::string file(const std::string& flavour, const std::string& name) const {
    return kernels_ + "/" + flavour + "/" + name;
  }

  // The release fetch-kernels.sh recorded for a flavour ("6.1.0-57-cloud-amd64").
  std::string release(const std::string& flavour) const {
    std::ifstream in(file(flavour, "version"));
    std::string release;
    std::getline(in, release);
    return release;
  }

  std::string modules_dir(const std::string& flavour) const {
    return file(flavour, "lib/modules/" + release(flavour));
  }

 private:
  std::string kernels_;
};

}  // namespace vmm::boot::testing
