#include "base/kvm/vm_state.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "base/util/error.hpp"

namespace vmm::kvm {
namespace {

kvm_irqchip chip(uint32_t chip_id, uint8_t seed) {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  for (size_t i = 0; i < sizeof(chip.chip.dummy); ++i) {
    chip.chip.dummy[i] = static_cast<char>(seed + i * 3);
  }
  return chip;
}

VmState sample_state() {
  VmState state;
  state.pic_master = chip(KVM_IRQCHIP_PIC_MASTER, 1);
  state.pic_slave = chip(KVM_IRQCHIP_PIC_SLAVE, 2);
  state.ioapic = chip(KVM_IRQCHIP_IOAPIC, 3);
  state.pit.channels[0].count = 0x10000;
  state.pit.channels[0].mode = 2;
  state.pit.channels[2].gate = 1;
  state.pit.flags = KVM_PIT_FLAGS_HPET_LEGACY;
  state.clock_ns = 123'456'789'012;
  state.realtime_ns = 1'750'000'000'000'000'000;
  return state;
}

std::vector<uint8_t> saved(const VmState& state) {
  StateWriter out;
  state.save(out);
  return out.take();
}

VmState load(std::span<const uint8_t> bytes) {
  StateReader in(bytes, "VM");
  return VmState::load(in);
}

// A KVM struct's bytes, padding included: what the state stream saves of it.
template <typename T>
std::vector<uint8_t> bytes_of(const T& value) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(&value);
  return {bytes, bytes + sizeof(T)};
}

void expect_corrupt(std::span<const uint8_t> bytes, const std::string& reason) {
  try {
    load(bytes);
    FAIL() << "no error for " << reason;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("VM: corrupt state: " + reason), std::string::npos)
        << e.what();
  }
}

TEST(VmState, RoundTripsEveryField) {
  const VmState state = sample_state();
  const VmState loaded = load(saved(state));
  EXPECT_EQ(bytes_of(loaded.pic_master), bytes_of(state.pic_master));
  EXPECT_EQ(bytes_of(loaded.pic_slave), bytes_of(state.pic_slave));
  EXPECT_EQ(bytes_of(loaded.ioapic), bytes_of(state.ioapic));
  EXPECT_EQ(bytes_of(loaded.pit), bytes_of(state.pit));
  EXPECT_EQ(loaded.clock_ns, state.clock_ns);
  EXPECT_EQ(loaded.realtime_ns, state.realtime_ns);
  EXPECT_EQ(saved(loaded), saved(state));
}

TEST(VmState, EveryTruncationThrows) {
  const auto bytes = saved(sample_state());
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_THROW(load(std::span(bytes).first(size)), Error) << "truncated to " << size;
  }
}

TEST(VmState, TrailingBytesThrow) {
  auto bytes = saved(sample_state());
  bytes.push_back(0);
  expect_corrupt(bytes, "1 unexpected bytes at the end");
}

TEST(VmState, AnIrqchipInTheWrongPlaceThrows) {
  VmState state = sample_state();
  std::swap(state.pic_master, state.pic_slave);
  expect_corrupt(saved(state), "the PIC master is saved as irqchip 1, not 0");
  state = sample_state();
  state.ioapic.chip_id = 7;
  expect_corrupt(saved(state), "the IOAPIC is saved as irqchip 7, not 2");
}

TEST(VmState, UnknownPitFlagsThrow) {
  VmState state = sample_state();
  state.pit.flags = 0x4;
  expect_corrupt(saved(state), "the PIT has unknown flags");
}

}  // namespace
}  // namespace vmm::kvm
