// Bad input that only loading the kernel into guest memory finds: these need a KVM to get that
// far (see bad_input_test.cpp for what is refused before /dev/kvm is opened).
#include "tests/integration/bad_input.hpp"

namespace vmm::testing {
namespace {

// What only loading into guest memory finds. Skipped in SetUp, which ends the test (a skip in a
// helper would not).
class BadInputWithKvm : public BadInput {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "needs /dev/kvm: " << why;
    }
  }
};

TEST_F(BadInputWithKvm, InitrdThatDoesNotFit) {
  const std::string initrd = file("big-initrd", std::vector<uint8_t>(20 << 20, 0));
  expect_error({"--kernel", test_guest_image("hello"), "--memory", "16M", "--initrd", initrd}, 1,
               "does not fit");
}

}  // namespace
}  // namespace vmm::testing
