#include "base/kvm/vm.hpp"

#include <time.h>

#include <limits>

#include "base/kvm/ioctl.hpp"

namespace vmm::kvm {

Vm Vm::create(const Kvm& kvm) {
  // Type 0: the default machine type.
  return Vm(UniqueFd(VMM_IOCTL(kvm.fd(), KVM_CREATE_VM, 0UL)));
}

void Vm::set_user_memory_region(uint32_t slot, uint64_t guest_address, uint64_t size,
                                void* host_address) {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = guest_address;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host_address);
  VMM_IOCTL(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region);
}

void Vm::set_tss_address(uint64_t address) {
  VMM_IOCTL(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(address));
}

void Vm::set_identity_map_address(uint64_t address) {
  VMM_IOCTL(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &address);
}

void Vm::create_irqchip() {
  VMM_IOCTL(fd_.get(), KVM_CREATE_IRQCHIP, 0UL);
}

void Vm::create_pit2() {
  kvm_pit_config config{};
  // The PIT's speaker port is not emulated in the kernel; Linux doesn't need it.
  config.flags = KVM_PIT_SPEAKER_DUMMY;
  VMM_IOCTL(fd_.get(), KVM_CREATE_PIT2, &config);
}

void Vm::set_irq_line(uint32_t irq, bool level) {
  kvm_irq_level irq_level{};
  irq_level.irq = irq;
  irq_level.level = level ? 1 : 0;
  VMM_IOCTL(fd_.get(), KVM_IRQ_LINE, &irq_level);
}

namespace {
kvm_ioeventfd make_ioeventfd(int event_fd, uint64_t address, uint32_t length, bool pio,
                             std::optional<uint64_t> datamatch) {
  kvm_ioeventfd io{};
  io.addr = address;
  io.len = length;
  io.fd = event_fd;
  io.flags = pio ? KVM_IOEVENTFD_FLAG_PIO : 0;
  if (datamatch) {
    io.datamatch = *datamatch;
    io.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  return io;
}
}  // namespace

void Vm::register_ioeventfd(int event_fd, uint64_t address, uint32_t length, bool pio,
                            std::optional<uint64_t> datamatch) {
  auto io = make_ioeventfd(event_fd, address, length, pio, datamatch);
  VMM_IOCTL(fd_.get(), KVM_IOEVENTFD, &io);
}

void Vm::unregister_ioeventfd(int event_fd, uint64_t address, uint32_t length, bool pio,
                              std::optional<uint64_t> datamatch) {
  auto io = make_ioeventfd(event_fd, address, length, pio, datamatch);
  io.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  VMM_IOCTL(fd_.get(), KVM_IOEVENTFD, &io);
}

void Vm::register_irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  VMM_IOCTL(fd_.get(), KVM_IRQFD, &irqfd);
}

void Vm::unregister_irqfd(int event_fd, uint32_t gsi) {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  VMM_IOCTL(fd_.get(), KVM_IRQFD, &irqfd);
}

kvm_clock_data Vm::clock_data() const {
  kvm_clock_data data{};
  VMM_IOCTL(fd_.get(), KVM_GET_CLOCK, &data);
  return data;
}

uint64_t Vm::clock() const {
  return clock_data().clock;
}

void Vm::set_clock(uint64_t nanoseconds) {
  kvm_clock_data data{};
  data.clock = nanoseconds;
  VMM_IOCTL(fd_.get(), KVM_SET_CLOCK, &data);
}

namespace {

kvm_irqchip read_irqchip(int vm_fd, uint32_t chip_id) {
  kvm_irqchip chip{};
  chip.chip_id = chip_id;
  VMM_IOCTL(vm_fd, KVM_GET_IRQCHIP, &chip);
  return chip;
}

uint64_t realtime_now_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace

VmState Vm::save_state() const {
  VmState state;
  state.pic_master = read_irqchip(fd_.get(), KVM_IRQCHIP_PIC_MASTER);
  state.pic_slave = read_irqchip(fd_.get(), KVM_IRQCHIP_PIC_SLAVE);
  state.ioapic = read_irqchip(fd_.get(), KVM_IRQCHIP_IOAPIC);
  VMM_IOCTL(fd_.get(), KVM_GET_PIT2, &state.pit);
  const kvm_clock_data clock = clock_data();
  state.clock_ns = clock.clock;
  // Newer kernels read the host's real time together with the clock; older ones leave it to us.
  state.realtime_ns = (clock.flags & KVM_CLOCK_REALTIME) != 0 ? clock.realtime : realtime_now_ns();
  return state;
}

void Vm::restore_state(const VmState& state, uint64_t clock_advance_ns) {
  if (clock_advance_ns > std::numeric_limits<uint64_t>::max() - state.clock_ns) {
    fail("the saved guest clock ({} ns) overflows when advanced by {} ns", state.clock_ns,
         clock_advance_ns);
  }
  VMM_IOCTL(fd_.get(), KVM_SET_PIT2, &state.pit);
  set_clock(state.clock_ns + clock_advance_ns);
  VMM_IOCTL(fd_.get(), KVM_SET_IRQCHIP, &state.pic_master);
  VMM_IOCTL(fd_.get(), KVM_SET_IRQCHIP, &state.pic_slave);
  VMM_IOCTL(fd_.get(), KVM_SET_IRQCHIP, &state.ioapic);
}

}  // namespace vmm::kvm
