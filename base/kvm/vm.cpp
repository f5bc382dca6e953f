#include "base/kvm/vm.hpp"

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

uint64_t Vm::clock() const {
  kvm_clock_data data{};
  VMM_IOCTL(fd_.get(), KVM_GET_CLOCK, &data);
  return data.clock;
}

void Vm::set_clock(uint64_t nanoseconds) {
  kvm_clock_data data{};
  data.clock = nanoseconds;
  VMM_IOCTL(fd_.get(), KVM_SET_CLOCK, &data);
}

}  // namespace vmm::kvm
