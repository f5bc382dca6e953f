#include "vmm/machine.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <deque>

#include "boot/cpuid.hpp"
#include "boot/kernel_loader.hpp"
#include "devices/backends/async_io.hpp"
#include "devices/backends/raw_file.hpp"
#include "devices/backends/tap.hpp"
#include "devices/bus.hpp"
#include "devices/legacy/acpi_power.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/pvpanic.hpp"
#include "devices/legacy/serial_16550.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/net.hpp"
#include "firmware/acpi/acpi.hpp"
#include "firmware/reset_vector.hpp"
#include "vmm/event/event_loop.hpp"
#include "vmm/kvm/kvm.hpp"
#include "vmm/kvm/vcpu.hpp"
#include "vmm/kvm/vm.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/kvm_irq_line.hpp"
#include "vmm/machine/platform.hpp"
#include "vmm/machine/terminal.hpp"
#include "vmm/machine/vcpu_thread.hpp"
#include "vmm/machine/virtio_mmio_slot.hpp"
#include "vmm/memory/guest_memory.hpp"
#include "vmm/memory/layout.hpp"
#include "vmm/util/error.hpp"
#include "vmm/util/mac_address.hpp"
#include "vmm/util/unique_fd.hpp"

namespace vmm {

namespace {

using Clock = std::chrono::steady_clock;

// Set as early as static initialisation allows: the reference for "time to first guest entry".
const Clock::time_point g_process_start = Clock::now();

double ms_since_start() {
  return std::chrono::duration<double, std::milli>(Clock::now() - g_process_start).count();
}

void write_all(int fd, std::span<const uint8_t> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the console sink is gone; the guest keeps running
    bytes = bytes.subspan(static_cast<size_t>(n));
  }
}

void require_capabilities(const kvm::Kvm& kvm) {
  kvm.require_extension(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP");
  kvm.require_extension(KVM_CAP_PIT2, "KVM_CAP_PIT2");
  kvm.require_extension(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY");
  kvm.require_extension(KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR");
  kvm.require_extension(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID");
  kvm.require_extension(KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT");
  kvm.require_extension(KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD");
  kvm.require_extension(KVM_CAP_IRQFD, "KVM_CAP_IRQFD");
}

devices::AsyncIo::Engine to_engine(DiskConfig::IoEngine engine) {
  switch (engine) {
    case DiskConfig::IoEngine::kIoUring: return devices::AsyncIo::Engine::kIoUring;
    case DiskConfig::IoEngine::kThreadPool: return devices::AsyncIo::Engine::kThreadPool;
    case DiskConfig::IoEngine::kAuto: break;
  }
  return devices::AsyncIo::Engine::kAuto;
}

// LINT0 delivers the PIC's ExtINT, LINT1 NMIs: what a PC's firmware programs and what Linux
// expects to find on every CPU.
void set_local_interrupts(kvm::Vcpu& vcpu) {
  kvm_lapic_state lapic = vcpu.lapic();
  auto set_lvt = [&lapic](size_t offset, uint32_t delivery_mode) {
    uint32_t value;
    std::memcpy(&value, &lapic.regs[offset], sizeof(value));
    value = (value & ~0x700u & ~0x10000u) | (delivery_mode << 8);
    std::memcpy(&lapic.regs[offset], &value, sizeof(value));
  };
  constexpr size_t kLvtLint0 = 0x350;
  constexpr size_t kLvtLint1 = 0x360;
  set_lvt(kLvtLint0, 0x7);  // ExtINT
  set_lvt(kLvtLint1, 0x4);  // NMI
  vcpu.set_lapic(lapic);
}

}  // namespace

struct Machine::Impl {
  explicit Impl(const MachineConfig& cfg)
      : config(cfg),
        kvm(kvm::Kvm::open(cfg.kvm_device)),
        vm(kvm::Vm::create(kvm)),
        memory(GuestMemory::allocate(cfg.memory_bytes)) {}

  void assemble();
  void create_devices();
  void create_disks();
  void create_nics();
  void create_vcpus(const boot::BootCpuState& boot_state);
  MachineExit run();
  void watch_console_input();
  void arm_timeout();
  void log_vcpu_positions() const;

  MachineConfig config;
  kvm::Kvm kvm;
  kvm::Vm vm;
  GuestMemory memory;
  // Before the devices: they register fds with it and remove them when destroyed.
  EventLoop loop;
  devices::Bus pio{"port I/O"};
  devices::Bus mmio{"MMIO"};
  ExitLatch latch;
  std::vector<std::unique_ptr<KvmIrqLine>> irq_lines;
  std::shared_ptr<devices::Serial16550> serial;
  UniqueFd serial_file;
  std::vector<std::unique_ptr<kvm::Vcpu>> vcpus;
  std::vector<std::unique_ptr<VcpuThread>> threads;
  // The disk images (their fds and locks) outlive the devices that do I/O on them.
  std::deque<devices::RawFile> disk_files;
  // After the buses (destroyed before them): unplugging a slot resets its device first.
  std::vector<std::unique_ptr<VirtioMmioSlot>> virtio_slots;
  EventFd serial_refill;
  UniqueFd timer;
  std::unique_ptr<RawTerminal> terminal;
  bool ran = false;
};

void Machine::Impl::assemble() {
  spdlog::debug("+{:.3f} ms: KVM opened, VM created, {} MiB of guest memory mapped",
                ms_since_start(), config.memory_bytes >> 20);
  require_capabilities(kvm);
  const int max_vcpus = kvm.max_vcpus();
  if (config.cpus > static_cast<uint32_t>(max_vcpus)) {
    fail("--cpus {}: this host's KVM supports at most {} vCPUs", config.cpus, max_vcpus);
  }
  vm.set_tss_address(layout::kKvmTssAddress);
  vm.set_identity_map_address(layout::kKvmIdentityMapAddress);
  vm.create_irqchip();
  vm.create_pit2();
  uint32_t slot = 0;
  for (const auto& region : memory.regions()) {
    vm.set_user_memory_region(slot++, region.guest_base, region.size, region.host);
  }

  spdlog::debug("+{:.3f} ms: irqchip, PIT and memory slots set up", ms_since_start());
  create_devices();
  create_disks();
  create_nics();
  acpi::PlatformDescription platform = platform_description(config.cpus);
  for (const auto& slot : virtio_slots) platform.devices.push_back(slot->acpi_description());
  const uint64_t rsdp = acpi::write_acpi_tables(memory, platform);
  firmware::write_reset_vector(memory, platform.reset_port, platform.reset_value);

  boot::KernelLoadConfig load;
  load.kernel_path = config.kernel_path;
  load.initrd_path = config.initrd_path;
  load.cmdline = config.cmdline;
  load.rsdp_address = rsdp;
  spdlog::debug("+{:.3f} ms: devices and ACPI tables ready", ms_since_start());
  const boot::BootEntry entry = boot::load_kernel(memory, load);
  spdlog::debug("+{:.3f} ms: kernel loaded, entry {:#x}", ms_since_start(), entry.entry);
  create_vcpus(boot::boot_cpu_state(memory, entry));
  spdlog::debug("+{:.3f} ms: {} vCPU(s) created", ms_since_start(), config.cpus);
}

void Machine::Impl::create_devices() {
  auto line = [this](uint32_t gsi) -> KvmIrqLine& {
    irq_lines.push_back(std::make_unique<KvmIrqLine>(vm, gsi));
    return *irq_lines.back();
  };

  devices::Serial16550::OutputSink sink;
  switch (config.serial.mode) {
    case SerialConfig::Mode::kStdio:
      sink = [](std::span<const uint8_t> bytes) { write_all(STDOUT_FILENO, bytes); };
      break;
    case SerialConfig::Mode::kFile: {
      serial_file.reset(::open(config.serial.path.c_str(),
                               O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644));
      if (!serial_file) throw_errno("--serial file:" + config.serial.path);
      const int fd = serial_file.get();
      sink = [fd](std::span<const uint8_t> bytes) { write_all(fd, bytes); };
      break;
    }
    case SerialConfig::Mode::kNone: break;
  }
  serial = std::make_shared<devices::Serial16550>(line(kSerialGsi), std::move(sink));
  pio.insert(devices::Serial16550::kCom1Base, devices::Serial16550::kPortCount, serial);

  pio.insert(devices::I8042::kPortBase, devices::I8042::kPortCount,
             std::make_shared<devices::I8042>(latch, &line(kKeyboardGsi)));
  pio.insert(devices::CmosRtc::kPortBase, devices::CmosRtc::kPortCount,
             std::make_shared<devices::CmosRtc>());
  pio.insert(devices::DebugExit::kPortBase, devices::DebugExit::kPortCount,
             std::make_shared<devices::DebugExit>(latch));
  pio.insert(devices::AcpiPower::kPortBase, devices::AcpiPower::kPortCount,
             std::make_shared<devices::AcpiPower>(latch));
  pio.insert(devices::PvPanic::kPortBase, devices::PvPanic::kPortCount,
             std::make_shared<devices::PvPanic>(latch));
}

void Machine::Impl::create_disks() {
  for (const DiskConfig& disk : config.disks) {
    const auto index = static_cast<uint32_t>(virtio_slots.size());
    std::string name = fmt::format("vd{}", static_cast<char>('a' + index));
    std::unique_ptr<devices::virtio::VirtioBlock> block;
    try {
      const devices::RawFile& file =
          disk_files.emplace_back(devices::RawFile::open(disk.path, disk.read_only));
      auto io = devices::AsyncIo::create(file.fd(), devices::virtio::VirtioBlock::kQueueSize,
                                         to_engine(disk.io_engine));
      spdlog::debug("{}: {} ({} bytes{}), {}", name, disk.path, file.size(),
                    disk.read_only ? ", read-only" : "", io->name());
      devices::virtio::BlockOptions options{disk.read_only, disk.serial};
      block = std::make_unique<devices::virtio::VirtioBlock>(memory, loop, file.size(),
                                                             std::move(io), options, name);
    } catch (const Error& e) {
      fail("--disk {}", e.what());
    }
    virtio_slots.push_back(std::make_unique<VirtioMmioSlot>(
        vm, loop, mmio, memory, index, virtio_gsi(index), std::move(block), "virtio-blk " + name));
  }
}

void Machine::Impl::create_nics() {
  for (size_t i = 0; i < config.nets.size(); ++i) {
    const NetConfig& net = config.nets[i];
    const auto index = static_cast<uint32_t>(virtio_slots.size());
    const std::string name = fmt::format("eth{} ({})", i, net.tap);
    const MacAddress mac = net.mac.value_or(stable_mac(net.tap));
    std::unique_ptr<devices::virtio::VirtioNet> nic;
    try {
      auto tap = std::make_unique<devices::Tap>(devices::Tap::open(net.tap));
      spdlog::debug("{}: mac {}{}", name, format_mac(mac), tap->created() ? ", tap created" : "");
      nic = std::make_unique<devices::virtio::VirtioNet>(memory, loop, std::move(tap), mac, name);
    } catch (const Error& e) {
      fail("--net {}", e.what());
    }
    virtio_slots.push_back(std::make_unique<VirtioMmioSlot>(
        vm, loop, mmio, memory, index, virtio_gsi(index), std::move(nic), "virtio-net " + name));
  }
}

void Machine::Impl::create_vcpus(const boot::BootCpuState& boot_state) {
  const auto supported = kvm.supported_cpuid();
  const size_t mmap_size = kvm.vcpu_mmap_size();
  for (uint32_t id = 0; id < config.cpus; ++id) {
    auto vcpu = std::make_unique<kvm::Vcpu>(vm, id, mmap_size);
    vcpu->set_cpuid(boot::guest_cpuid(supported, id, config.cpus));
    set_local_interrupts(*vcpu);
    if (id == 0) {
      vcpu->set_msrs(boot_state.msrs);
      vcpu->set_sregs(boot_state.sregs);
      vcpu->set_regs(boot_state.regs);
      vcpu->set_fpu(boot_state.fpu);
    }
    vcpus.push_back(std::move(vcpu));
  }
}

void Machine::Impl::watch_console_input() {
  if (config.serial.mode != SerialConfig::Mode::kStdio) return;
  terminal = RawTerminal::enter(STDIN_FILENO);
  // Reading stdin pauses while the UART's input queue is full; the UART asks for a refill once
  // the guest drains it, and reading resumes then. Nothing typed is dropped.
  serial->set_input_notifier([this] { serial_refill.signal(); });
  auto read_stdin = [this](uint32_t) {
    std::array<uint8_t, 4096> buffer{};
    const size_t want = std::min(buffer.size(), serial->input_space());
    if (want == 0) {
      loop.modify(STDIN_FILENO, 0);
      return;
    }
    const ssize_t n = ::read(STDIN_FILENO, buffer.data(), want);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
      loop.remove(STDIN_FILENO);  // end of input: the guest just sees no more bytes
      return;
    }
    serial->enqueue_input(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
  };
  try {
    loop.add(STDIN_FILENO, EPOLLIN, read_stdin);
  } catch (const Error& e) {
    // stdin is a regular file or /dev/null (epoll refuses those): no interactive input.
    spdlog::debug("console input not watched: {}", e.what());
    return;
  }
  loop.add(serial_refill.fd(), EPOLLIN, [this](uint32_t) {
    serial_refill.consume();
    serial->enqueue_input({});
    try {
      if (serial->input_space() > 0) loop.modify(STDIN_FILENO, EPOLLIN);
    } catch (const Error&) {
      // stdin already reached its end and was removed
    }
  });
}

void Machine::Impl::arm_timeout() {
  if (config.timeout_seconds == 0) return;
  timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer) throw_errno("timerfd_create");
  itimerspec spec{};
  spec.it_value.tv_sec = config.timeout_seconds;
  if (::timerfd_settime(timer.get(), 0, &spec, nullptr) != 0) throw_errno("timerfd_settime");
  loop.add(timer.get(), EPOLLIN, [this](uint32_t) {
    MachineExit exit;
    exit.reason = MachineExit::Reason::kTimeout;
    latch.set(exit);
  });
}

// Where each vCPU was when the machine stopped without the guest's consent: the first clue to a
// guest that hangs.
void Machine::Impl::log_vcpu_positions() const {
  for (const auto& vcpu : vcpus) {
    try {
      const kvm_regs regs = vcpu->regs();
      spdlog::info("vCPU {} stopped at rip {:#x} (rsp {:#x}, rflags {:#x})", vcpu->id(), regs.rip,
                   regs.rsp, regs.rflags);
    } catch (const Error& e) {
      spdlog::debug("vCPU {}: {}", vcpu->id(), e.what());
    }
  }
}

MachineExit Machine::Impl::run() {
  if (ran) fail("a machine can only be run once");
  ran = true;
  loop.add(latch.fd(), EPOLLIN, [this](uint32_t) { loop.stop(); });
  watch_console_input();
  arm_timeout();

  for (auto& vcpu : vcpus) {
    threads.push_back(std::make_unique<VcpuThread>(*vcpu, pio, mmio, latch));
  }
  const auto started = Clock::now();
  spdlog::debug("+{:.3f} ms: starting {} vCPU(s)", ms_since_start(), vcpus.size());
  for (auto& thread : threads) thread->start();

  loop.run();

  for (auto& thread : threads) thread->stop();
  for (auto& thread : threads) thread->join();
  terminal.reset();
  auto exit = latch.result();
  if (exit && exit->reason == MachineExit::Reason::kTimeout) log_vcpu_positions();
  spdlog::debug("guest ran for {:.3f} s: {}",
                std::chrono::duration<double>(Clock::now() - started).count(),
                exit ? exit->describe() : "no exit reason");
  return exit.value_or(MachineExit{});
}

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

std::unique_ptr<Machine> Machine::create(const MachineConfig& config) {
  validate_config(config);
  auto impl = std::make_unique<Impl>(config);
  impl->assemble();
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

MachineExit Machine::run() {
  return impl_->run();
}

}  // namespace vmm
