#include "base/kvm/vcpu_state.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "base/util/error.hpp"

namespace vmm::kvm {
namespace {

// Fills a KVM struct with a pattern, so a field read back from the wrong place shows.
template <typename T>
T patterned(uint8_t seed) {
  T value;
  auto* bytes = reinterpret_cast<uint8_t*>(&value);
  for (size_t i = 0; i < sizeof(T); ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7);
  return value;
}

// A KVM struct's bytes, padding included: what the state stream saves of it.
template <typename T>
std::vector<uint8_t> bytes_of(const T& value) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
  return {bytes, bytes + sizeof(T)};
}

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t eax, uint32_t ebx, uint32_t ecx, uint32_t edx) {
  kvm_cpuid_entry2 entry{};
  entry.function = function;
  entry.eax = eax;
  entry.ebx = ebx;
  entry.ecx = ecx;
  entry.edx = edx;
  return entry;
}

// "GenuineIntel", family 6 model 0x55 (Skylake-SP), and a leaf with a significant index.
std::vector<kvm_cpuid_entry2> intel_cpuid() {
  auto leaf7 = leaf(7, 0, 0x029c6fbf, 0, 0);
  leaf7.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
  return {leaf(0, 0x16, 0x756e6547, 0x6c65746e, 0x49656e69), leaf(1, 0x00050654, 0, 0, 0), leaf7};
}

VcpuState sample_state() {
  VcpuState state;
  state.regs = patterned<kvm_regs>(1);
  state.sregs = patterned<kvm_sregs>(2);
  XsaveArea xsave(5000);
  for (size_t i = 0; i < xsave.size(); ++i) xsave[i] = static_cast<uint8_t>(i * 13);
  state.fpu = xsave;
  kvm_xcrs xcrs{};
  xcrs.nr_xcrs = 1;
  xcrs.xcrs[0].value = 0x2e7;
  state.xcrs = xcrs;
  state.msrs = {{0x10, 0x123456789abcdef}, {0x4b564d01, 0x1001}, {0x6e0, 0xfedcba9876543210}};
  state.lapic = patterned<kvm_lapic_state>(3);
  state.mp_state.mp_state = KVM_MP_STATE_HALTED;
  state.events = patterned<kvm_vcpu_events>(4);
  kvm_debugregs debugregs{};
  debugregs.db[2] = 0x1234;
  debugregs.dr7 = 0x400;
  state.debugregs = debugregs;
  state.cpuid = intel_cpuid();
  state.tsc_khz = 2'995'200;
  return state;
}

std::vector<uint8_t> saved(const VcpuState& state) {
  StateWriter out;
  state.save(out);
  return out.take();
}

VcpuState load(std::span<const uint8_t> bytes) {
  StateReader in(bytes, "vCPU 0");
  return VcpuState::load(in);
}

void expect_corrupt(std::span<const uint8_t> bytes, const std::string& reason) {
  try {
    load(bytes);
    FAIL() << "no error for " << reason;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vCPU 0: corrupt state: " + reason), std::string::npos)
        << e.what();
  }
}

// Where the fields after the registers start in a saved state with an XSAVE area of `xsave_bytes`
// and XCRs: the flag byte, the area's length and bytes, the XCRs' flag byte and the XCRs.
size_t msr_count_offset(size_t xsave_bytes) {
  return sizeof(kvm_regs) + sizeof(kvm_sregs) + 1 + 4 + xsave_bytes + 1 + sizeof(kvm_xcrs);
}

template <typename T>
void overwrite(std::vector<uint8_t>& bytes, size_t offset, const T& value) {
  ASSERT_LE(offset + sizeof(T), bytes.size());
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

TEST(VcpuState, RoundTripsEveryField) {
  const VcpuState state = sample_state();
  const VcpuState loaded = load(saved(state));

  EXPECT_EQ(bytes_of(loaded.regs), bytes_of(state.regs));
  EXPECT_EQ(bytes_of(loaded.sregs), bytes_of(state.sregs));
  ASSERT_TRUE(std::holds_alternative<XsaveArea>(loaded.fpu));
  EXPECT_EQ(std::get<XsaveArea>(loaded.fpu), std::get<XsaveArea>(state.fpu));
  ASSERT_TRUE(loaded.xcrs.has_value());
  EXPECT_EQ(bytes_of(*loaded.xcrs), bytes_of(*state.xcrs));
  EXPECT_EQ(loaded.msrs, state.msrs);
  EXPECT_EQ(bytes_of(loaded.lapic), bytes_of(state.lapic));
  EXPECT_EQ(loaded.mp_state.mp_state, uint32_t{KVM_MP_STATE_HALTED});
  EXPECT_EQ(bytes_of(loaded.events), bytes_of(state.events));
  EXPECT_EQ(bytes_of(loaded.debugregs), bytes_of(state.debugregs));
  ASSERT_EQ(loaded.cpuid.size(), state.cpuid.size());
  for (size_t i = 0; i < state.cpuid.size(); ++i) {
    EXPECT_EQ(bytes_of(loaded.cpuid[i]), bytes_of(state.cpuid[i])) << "CPUID entry " << i;
  }
  EXPECT_EQ(loaded.tsc_khz, state.tsc_khz);
  // What was loaded saves to the same bytes.
  EXPECT_EQ(saved(loaded), saved(state));
}

TEST(VcpuState, RoundTripsTheLegacyFpuWithoutXcrs) {
  VcpuState state = sample_state();
  state.fpu = patterned<kvm_fpu>(5);
  state.xcrs.reset();
  state.msrs.clear();
  const VcpuState loaded = load(saved(state));
  ASSERT_TRUE(std::holds_alternative<kvm_fpu>(loaded.fpu));
  EXPECT_EQ(bytes_of(std::get<kvm_fpu>(loaded.fpu)), bytes_of(std::get<kvm_fpu>(state.fpu)));
  EXPECT_FALSE(loaded.xcrs.has_value());
  EXPECT_TRUE(loaded.msrs.empty());
  EXPECT_EQ(saved(loaded), saved(state));
}

TEST(VcpuState, EveryTruncationThrows) {
  const auto bytes = saved(sample_state());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_THROW(load(std::span(bytes).first(size)), Error) << "truncated to " << size;
  }
}

TEST(VcpuState, TrailingBytesThrow) {
  auto bytes = saved(sample_state());
  bytes.push_back(0);
  expect_corrupt(bytes, "1 unexpected bytes at the end");
}

TEST(VcpuState, AnMsrCountOverTheLimitThrows) {
  auto bytes = saved(sample_state());
  const size_t offset = msr_count_offset(5000);
  uint32_t count = 0;
  std::memcpy(&count, bytes.data() + offset, sizeof(count));
  ASSERT_EQ(count, 3u) << "the test's idea of the layout is out of date";
  overwrite(bytes, offset, static_cast<uint32_t>(VcpuState::kMaxMsrs + 1));
  expect_corrupt(bytes, "the MSR count is out of range");
  // A count within the limit but past the end is a truncation, not an over-read.
  overwrite(bytes, offset, static_cast<uint32_t>(VcpuState::kMaxMsrs));
  expect_corrupt(bytes, "truncated");
}

TEST(VcpuState, ABadFlagThrows) {
  auto bytes = saved(sample_state());
  const size_t xsave_flag = sizeof(kvm_regs) + sizeof(kvm_sregs);
  ASSERT_EQ(bytes[xsave_flag], 1);
  bytes[xsave_flag] = 2;
  expect_corrupt(bytes, "a flag is neither 0 nor 1");
}

TEST(VcpuState, XsaveAreasOutsideTheLimitsThrow) {
  VcpuState state = sample_state();
  state.fpu = XsaveArea(VcpuState::kMinXsaveBytes - 4);
  expect_corrupt(saved(state), "an XSAVE area of 4092 bytes is under 4096");
  state.fpu = XsaveArea(VcpuState::kMaxXsaveBytes + 1);
  expect_corrupt(saved(state), "a field of 65537 bytes exceeds its limit of 65536");
}

TEST(VcpuState, BadXcrsThrow) {
  VcpuState state = sample_state();
  state.xcrs->nr_xcrs = KVM_MAX_XCRS + 1;
  expect_corrupt(saved(state), "the XCR count is out of range");
  state.xcrs->nr_xcrs = 1;
  state.xcrs->flags = 1;
  expect_corrupt(saved(state), "the XCRs have unknown flags");
}

TEST(VcpuState, AnMpStateKvmDoesNotKnowOnX86Throws) {
  VcpuState state = sample_state();
  state.mp_state.mp_state = KVM_MP_STATE_STOPPED;  // s390's
  expect_corrupt(saved(state), "the MP state is out of range");
  state.mp_state.mp_state = 0xffffffff;
  expect_corrupt(saved(state), "the MP state is out of range");
  state.mp_state.mp_state = KVM_MP_STATE_AP_RESET_HOLD;
  EXPECT_NO_THROW(load(saved(state)));
}

TEST(VcpuState, DebugRegisterFlagsThrow) {
  VcpuState state = sample_state();
  state.debugregs.flags = 1;
  expect_corrupt(saved(state), "the debug registers have unknown flags");
}

TEST(VcpuState, CpuidWithUnknownFlagsOrTooManyEntriesThrows) {
  VcpuState state = sample_state();
  state.cpuid[1].flags = 0x80;
  expect_corrupt(saved(state), "CPUID leaf 0x1 has unknown flags");
  state.cpuid = std::vector<kvm_cpuid_entry2>(VcpuState::kMaxCpuidEntries + 1);
  expect_corrupt(saved(state), "a field of 10280 bytes exceeds its limit of 10240");
}

TEST(VcpuState, NamesTheCpuFromItsCpuid) {
  VcpuState state;
  state.cpuid = intel_cpuid();
  const CpuIdentity intel = state.cpu_identity();
  EXPECT_EQ(intel.vendor, "GenuineIntel");
  EXPECT_EQ(intel.family, 6u);
  EXPECT_EQ(intel.model, 0x55u);

  // AMD Zen 3: base family 15 plus extended family 0xa; the extended model counts for family 15.
  state.cpuid = {leaf(0, 0x10, 0x68747541, 0x444d4163, 0x69746e65), leaf(1, 0x00a20f10, 0, 0, 0)};
  const CpuIdentity amd = state.cpu_identity();
  EXPECT_EQ(amd.vendor, "AuthenticAMD");
  EXPECT_EQ(amd.family, 0x19u);
  EXPECT_EQ(amd.model, 0x21u);

  // Family 5 (a Pentium): the extended fields don't count.
  state.cpuid = {leaf(0, 1, 0, 0, 0), leaf(1, 0x00f10543, 0, 0, 0)};
  EXPECT_EQ(state.cpu_identity().family, 5u);
  EXPECT_EQ(state.cpu_identity().model, 4u);
}

TEST(VcpuState, CpuIdentityWithoutLeafOneThrows) {
  VcpuState state;
  state.cpuid = {intel_cpuid()[0]};
  EXPECT_THROW(state.cpu_identity(), Error);
  state.cpuid.clear();
  EXPECT_THROW(state.cpu_identity(), Error);
}

}  // namespace
}  // namespace vmm::kvm
