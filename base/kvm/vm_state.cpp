#include "base/kvm/vm_state.hpp"

#include <fmt/format.h>

#include <string_view>

namespace vmm::kvm {

namespace {

constexpr uint32_t kKnownPitFlags = KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON;

kvm_irqchip load_irqchip(StateReader& in, uint32_t chip_id, std::string_view name) {
  const auto chip = in.get<kvm_irqchip>();
  if (chip.chip_id != chip_id) {
    in.corrupt(fmt::format("the {} is saved as irqchip {}, not {}", name, chip.chip_id, chip_id));
  }
  return chip;
}

}  // namespace

void VmState::save(StateWriter& out) const {
  out.put(pic_master);
  out.put(pic_slave);
  out.put(ioapic);
  out.put(pit);
  out.put(clock_ns);
  out.put(realtime_ns);
}

VmState VmState::load(StateReader& in) {
  VmState state;
  state.pic_master = load_irqchip(in, KVM_IRQCHIP_PIC_MASTER, "PIC master");
  state.pic_slave = load_irqchip(in, KVM_IRQCHIP_PIC_SLAVE, "PIC slave");
  state.ioapic = load_irqchip(in, KVM_IRQCHIP_IOAPIC, "IOAPIC");
  state.pit = in.get<kvm_pit_state2>();
  if ((state.pit.flags & ~kKnownPitFlags) != 0) in.corrupt("the PIT has unknown flags");
  state.clock_ns = in.get<uint64_t>();
  state.realtime_ns = in.get<uint64_t>();
  in.expect_end();
  return state;
}

}  // namespace vmm::kvm
