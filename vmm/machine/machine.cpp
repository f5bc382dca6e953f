#include "vmm/machine.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "base/event/event_loop.hpp"
#include "base/kvm/kvm.hpp"
#include "base/kvm/vcpu.hpp"
#include "base/kvm/vm.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "base/util/state_archive.hpp"
#include "base/util/thread_annotations.hpp"
#include "base/util/unique_fd.hpp"
#include "boot/cpuid.hpp"
#include "boot/initramfs/init/init_abi.h"
#include "boot/kernel_loader.hpp"
#include "devices/backends/async_io.hpp"
#include "devices/backends/disk_image.hpp"
#include "devices/backends/tap.hpp"
#include "devices/bus.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial_16550.hpp"
#include "devices/legacy/vm_generation_id.hpp"
#include "devices/vhost_user/vhost_user_device.hpp"
#include "devices/virtio/block.hpp"
#include "devices/virtio/console.hpp"
#include "devices/virtio/net.hpp"
#include "devices/virtio/vsock.hpp"
#include "firmware/acpi/acpi.hpp"
#include "firmware/mptable.hpp"
#include "firmware/reset_vector.hpp"
#include "vmm/machine/command_control.hpp"
#include "vmm/machine/control_protocol.hpp"
#include "vmm/machine/control_socket.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/host_resources.hpp"
#include "vmm/machine/kvm_irq_line.hpp"
#include "vmm/machine/pause_gate.hpp"
#include "vmm/machine/platform.hpp"
#include "vmm/machine/snapshot_files.hpp"
#include "vmm/machine/terminal.hpp"
#include "vmm/machine/vcpu_thread.hpp"
#include "vmm/machine/virtio_mmio_slot.hpp"
#include "vmm/security/seccomp_filter.hpp"

namespace vmm {

namespace {

using Clock = std::chrono::steady_clock;

// MachineConfig::command's console ports: stdin, stdout, stderr, control (create_console()).
constexpr uint32_t kCommandControlPort = 3;

// A snapshot disk's overlay in a snapshot: its written sectors in the state, its bytes in a file.
std::string overlay_section(size_t disk) {
  return fmt::format("overlay{}", disk);
}
std::string overlay_file(size_t disk) {
  return fmt::format("disk{}.overlay", disk);
}
constexpr size_t kMaxOverlayRuns = StateArchive::kMaxSectionBytes / sizeof(devices::SectorRun);

// Set as early as static initialisation allows: the reference for "time to first guest entry".
const Clock::time_point g_process_start = Clock::now();

double ms_since_start() {
  return std::chrono::duration<double, std::milli>(Clock::now() - g_process_start).count();
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

// The public config's limit as the devices take it (the same fields: the public header includes
// nothing of vmm's own).
RateLimit to_rate_limit(const RateLimitConfig& limit) {
  return {limit.bytes_per_second, limit.bytes_burst, limit.ops_per_second, limit.ops_burst};
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

// Threads: start() launches one thread per vCPU and the loop thread, which runs `loop` (device
// work, console input, the timeout) until the ExitLatch is set, then stops and joins the vCPUs;
// the control socket, if any, has a thread of its own. Pausing parks the vCPUs and the loop thread
// at the PauseGate, so device work (completions, rx, console input) waits too.
struct Machine::Impl final : ControlTarget {
  // `host` is opened first: bad input is reported before /dev/kvm is looked at.
  // `ram`: fresh (GuestMemory::allocate) or a snapshot's (GuestMemory::map_file).
  Impl(const MachineConfig& cfg, HostResources host, GuestMemory ram)
      : config_(cfg),
        host_(std::move(host)),
        kvm(kvm::Kvm::open(cfg.kvm_device)),
        vm(kvm::Vm::create(kvm)),
        memory(std::move(ram)),
        current_config(cfg) {}

  // A new guest: the VM, its devices, the firmware tables and the kernel.
  void assemble();
  // A snapshot's guest: the VM and its devices as assemble() makes them, then their saved state
  // (the tables and the kernel are in the restored RAM).
  void assemble_restored(const StateArchive& state, uint64_t clock_advance_ns);
  void set_up_vm();
  void create_all_devices();
  void create_devices();
  void create_disks();
  void create_nics();
  void create_vsock();
  // The shares (virtio-fs) and the other vhost-user devices, each over its backend's socket.
  void create_vhost_user_devices();
  // MachineConfig::command's ports, or --console's hvc0.
  void create_console();
  void on_command_control(std::span<const uint8_t> bytes);
  void signal_command(int signal);
  void send_command_signal(int signal);
  // Puts `device` in the next virtio-mmio slot (address, GSI, DSDT entry); `metrics_name` is how
  // MachineMetrics names it (disk0, net0, ...).
  void plug_virtio(std::unique_ptr<devices::virtio::VirtioDevice> device, const std::string& name,
                   std::string metrics_name);
  // Without `boot_state`: bare vCPUs, whose state a restore sets.
  void create_vcpus(const boot::BootCpuState* boot_state);
  void create_console_output();
  void watch_console();
  void feed_console_input();
  void arm_timeout();
  void log_where_things_stood() const;

  void start();
  void run_loop();
  std::optional<MachineExit> wait(std::optional<std::chrono::milliseconds> timeout);
  void send_console_input(std::span<const uint8_t> bytes);
  // Stops the machine and releases its threads (the control socket's first, as it calls in).
  void shut_down();

  void snapshot(const std::string& path, bool stay_paused) override;
  // Pauses and resumes with transition_mutex held; pause_locked() returns false if the machine
  // was paused already.
  bool pause_locked() VMM_REQUIRES(transition_mutex);
  void resume_locked() VMM_REQUIRES(transition_mutex);
  void write_snapshot(const std::string& path);
  // A snapshot disk's overlay: what the guest had written, from the snapshot's folder.
  void restore_overlays(const StateArchive& state);
  // Also records vCPU 0's CPUID in `manifest`.
  StateArchive save_state(SnapshotManifest& manifest);

  MachineState state() const override;
  std::chrono::milliseconds uptime() const override;
  MachineMetrics metrics() const override;
  void set_disk_rate_limit(size_t index, const RateLimitConfig& limit) override;
  void set_net_rate_limits(size_t index, const RateLimitConfig& rx,
                           const RateLimitConfig& tx) override;
  void pause() override;
  void resume() override;
  void stop() override;
  MachineConfig config() const override;

  // As created: config() is current_config, below, which the rate limits change.
  const MachineConfig config_;
  // The disk images and taps move into their devices; the disks' files outlive the devices that
  // do I/O on them.
  HostResources host_;
  kvm::Kvm kvm;
  kvm::Vm vm;
  GuestMemory memory;
  // Before the devices: they register fds with it and remove them when destroyed.
  EventLoop loop;
  devices::Bus pio{"port I/O"};
  devices::Bus mmio{"MMIO"};
  PauseGate gate;
  // A stopping machine opens the gate for good: parked threads must see the stop.
  ExitLatch latch{[this] { gate.close(); }};
  std::vector<std::unique_ptr<KvmIrqLine>> irq_lines;
  std::shared_ptr<devices::Serial16550> serial;
  std::shared_ptr<devices::I8042> i8042;
  std::shared_ptr<devices::CmosRtc> rtc;
  // A new ID in every process: at boot, and over a restored guest's RAM.
  std::unique_ptr<devices::VmGenerationId> generation_id;
  // The console sink: drains the UART's output buffer on the loop thread.
  std::unique_ptr<ConsoleOutput> console_output;
  std::vector<std::unique_ptr<kvm::Vcpu>> vcpus;
  // One per vCPU, made with them: any thread reads them, from Machine::create on.
  std::vector<std::unique_ptr<VcpuExitCounts>> vcpu_exits;
  std::vector<std::unique_ptr<VcpuThread>> threads;
  // The loop thread owns the virtio devices; vCPUs hand work over and wait at the gate.
  LoopDeviceOwner device_owner{loop, gate};
  // After the buses (destroyed before them): unplugging a slot resets its device first.
  std::vector<std::unique_ptr<VirtioMmioSlot>> virtio_slots;
  // Each device (owned by its slot's transport) under its metrics name; read by any thread.
  std::vector<std::pair<std::string, const devices::virtio::VirtioDevice*>> metered_devices;
  // The disks and NICs (owned by their slots), for live changes of their rate limits.
  std::vector<devices::virtio::VirtioBlock*> blocks;
  std::vector<devices::virtio::VirtioNet*> nics;
  EventFd serial_refill;
  UniqueFd timer;
  std::unique_ptr<RawTerminal> terminal;
  bool stdin_watched = false;
  // A restored machine's snapshot folder (its disk overlays' files).
  std::string snapshot_dir;
  // Owned by its transport (virtio_slots); the loop thread's.
  devices::virtio::VirtioConsole* console_device = nullptr;
  std::vector<UniqueFd> console_fds;  // the ports' host ends that vmm made
  CommandControl command_control;     // the loop thread's

  // send_console_input() → the loop thread, which feeds the UART as it makes room.
  EventFd console_input;
  Mutex input_mutex;
  std::deque<uint8_t> pending_input VMM_GUARDED_BY(input_mutex);

  // Makes the loop thread reach the pause gate.
  EventFd pause_request;
  bool clock_adjustable = false;
  std::optional<uint64_t> paused_clock;

  // config_ with the rate limits now: set_disk_rate_limit and set_net_rate_limits change them (on
  // the control socket's thread, or an embedder's) while another thread may read config().
  mutable Mutex config_mutex;
  MachineConfig current_config VMM_GUARDED_BY(config_mutex);

  // Serialises start/pause/resume (each may wait for other threads); never held by them.
  Mutex transition_mutex;
  // Guards the lifecycle flags below; `finished_cv` tells waiters the loop thread is done.
  mutable Mutex mutex;
  std::condition_variable finished_cv;
  bool started VMM_GUARDED_BY(mutex) = false;
  bool paused VMM_GUARDED_BY(mutex) = false;
  bool finished VMM_GUARDED_BY(mutex) = false;
  Clock::time_point started_at VMM_GUARDED_BY(mutex);
  Mutex join_mutex;
  std::thread loop_thread;
  std::unique_ptr<ControlServer> control;
};

void Machine::Impl::set_up_vm() {
  spdlog::debug("+{:.3f} ms: KVM opened, VM created, {} MiB of guest memory mapped ({})",
                ms_since_start(), config_.memory_bytes >> 20,
                memory.fd() >= 0 ? "a memfd"
                                 : "private memory: a restored snapshot's file, or anonymous where "
                                   "the host gives a memfd no huge pages");
  require_capabilities(kvm);
  clock_adjustable = kvm.check_extension(KVM_CAP_ADJUST_CLOCK) != 0;
  const int max_vcpus = kvm.max_vcpus();
  if (config_.cpus > static_cast<uint32_t>(max_vcpus)) {
    fail("--cpus {}: this host's KVM supports at most {} vCPUs", config_.cpus, max_vcpus);
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
  // Read once per process, here, before any thread is confined: a snapshot saves these MSRs.
  kvm.msrs_to_save();
}

void Machine::Impl::create_all_devices() {
  create_devices();
  create_disks();
  create_nics();
  create_vsock();
  create_vhost_user_devices();
  create_console();
}

void Machine::Impl::assemble() {
  set_up_vm();
  create_all_devices();
  acpi::PlatformDescription platform = platform_description(config_.cpus);
  for (const auto& slot : virtio_slots) platform.devices.push_back(slot->acpi_description());
  const uint64_t rsdp = acpi::write_acpi_tables(memory, platform);
  firmware::write_mp_table(memory, platform);
  firmware::write_reset_vector(memory, platform.reset_port, platform.reset_value);

  const boot::KernelLoadInput load{.kernel = host_.kernel,
                                   .kernel_name = host_.kernel_name,
                                   .initrd = host_.initrd,
                                   .initrd_name = host_.initrd_name,
                                   .cmdline = host_.cmdline,
                                   .rsdp_address = rsdp};
  spdlog::debug("+{:.3f} ms: devices and ACPI tables ready", ms_since_start());
  const boot::BootEntry entry = boot::load_kernel(memory, load);
  spdlog::debug("+{:.3f} ms: kernel loaded, entry {:#x}", ms_since_start(), entry.entry);
  const boot::BootCpuState boot_state = boot::boot_cpu_state(memory, entry);
  create_vcpus(&boot_state);
  spdlog::debug("+{:.3f} ms: {} vCPU(s) created", ms_since_start(), config_.cpus);
}

void Machine::Impl::assemble_restored(const StateArchive& state, uint64_t clock_advance_ns) {
  set_up_vm();
  create_all_devices();
  create_vcpus(nullptr);
  // The interrupt controllers first: the devices' restores raise what was pending. Then each
  // vCPU before its first KVM_RUN.
  {
    StateReader in = state.reader("vm");
    vm.restore_state(kvm::VmState::load(in), clock_advance_ns);
  }
  for (const auto& vcpu : vcpus) {
    StateReader in = state.reader(fmt::format("vcpu{}", vcpu->id()));
    vcpu->restore_state(kvm::VcpuState::load(in));
  }
  auto restore_device = [&state](const std::string& name, auto& device) {
    StateReader in = state.reader(name);
    device.restore_state(in);
    in.expect_end();
  };
  restore_overlays(state);
  restore_device("serial", *serial);
  restore_device("i8042", *i8042);
  restore_device("rtc", *rtc);
  for (size_t i = 0; i < virtio_slots.size(); ++i) {
    restore_device(fmt::format("virtio{}", i), *virtio_slots[i]);
  }
  // After the interrupt controllers' and vCPUs' restores, which would drop the edge: Linux's
  // vmgenid driver reads the new ID and reseeds the guest's RNG, so clones part ways.
  generation_id->notify_guest();
  spdlog::info("VM generation ID {:02x} (the guest is told it changed)",
               fmt::join(generation_id->id(), ""));
  spdlog::debug("+{:.3f} ms: {} vCPU(s) and {} virtio device(s) restored", ms_since_start(),
                vcpus.size(), virtio_slots.size());
}

void Machine::Impl::restore_overlays(const StateArchive& state) {
  for (size_t i = 0; i < host_.disks.size(); ++i) {
    if (!state.contains(overlay_section(i))) continue;
    StateReader in = state.reader(overlay_section(i));
    const auto runs = in.get_vector<devices::SectorRun>(kMaxOverlayRuns);
    in.expect_end();
    if (runs.empty()) continue;
    devices::DiskImage& disk = host_.disks[i];
    if (!disk.has_overlay()) {
      fail(
          "--disk {}: the snapshot's guest wrote to its snapshot overlay of this disk; restore it "
          "with snapshot=on (or mem) too",
          disk.path());
    }
    const std::string file = snapshot_path(snapshot_dir, overlay_file(i));
    const UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno(file);
    disk.load_overlay(fd.get(), runs, file);
  }
}

void Machine::Impl::create_devices() {
  auto line = [this](uint32_t gsi) -> KvmIrqLine& {
    irq_lines.push_back(std::make_unique<KvmIrqLine>(vm, gsi));
    return *irq_lines.back();
  };

  serial = std::make_shared<devices::Serial16550>(line(kSerialGsi));
  create_console_output();
  // Input (stdin, send_console_input) waits while the UART's queue is full; the UART asks for a
  // refill once the guest drains it.
  serial->set_input_notifier([this] { serial_refill.signal(); });
  pio.insert(devices::Serial16550::kCom1Base, devices::Serial16550::kPortCount, serial);

  i8042 = std::make_shared<devices::I8042>(latch, &line(kKeyboardGsi));
  pio.insert(devices::I8042::kPortBase, devices::I8042::kPortCount, i8042);
  rtc = std::make_shared<devices::CmosRtc>();
  pio.insert(devices::CmosRtc::kPortBase, devices::CmosRtc::kPortCount, rtc);
  insert_guest_request_ports(pio, latch, config_.debug_exit);
  generation_id = std::make_unique<devices::VmGenerationId>(memory, layout::kVmGenerationId,
                                                            line(kVmGenerationIdGsi));
  spdlog::debug("VM generation ID {:02x}", fmt::join(generation_id->id(), ""));
}

// The guest's output waits in the UART's bounded buffer until the loop thread writes it; while the
// buffer is full the UART reports its transmitter busy, so the guest waits, not a vCPU thread.
void Machine::Impl::create_console_output() {
  switch (config_.serial.mode) {
    case SerialConfig::Mode::kStdio:
      console_output = ConsoleOutput::to_fd(loop, *serial, STDOUT_FILENO, "console (stdout)");
      return;
    case SerialConfig::Mode::kFd:
      console_output = ConsoleOutput::to_fd(loop, *serial, config_.serial.fd,
                                            fmt::format("console (fd {})", config_.serial.fd));
      return;
    case SerialConfig::Mode::kCallback:
      console_output = ConsoleOutput::to_callback(loop, *serial, config_.serial.callback);
      return;
    case SerialConfig::Mode::kFile:
      console_output = ConsoleOutput::to_owned_fd(loop, *serial, std::move(host_.serial_file),
                                                  "--serial file:" + config_.serial.path);
      return;
    case SerialConfig::Mode::kNone: break;
  }
  console_output = ConsoleOutput::to_callback(loop, *serial, nullptr);  // discards
}

void Machine::Impl::create_disks() {
  for (size_t i = 0; i < config_.disks.size(); ++i) {
    const DiskConfig& disk = config_.disks[i];
    // Linux names virtio disks in probe order: vda, vdb, ... (at most 18: no vdaa to worry about).
    const std::string name = fmt::format("vd{}", static_cast<char>('a' + i));
    const devices::DiskImage& image = host_.disks[i];
    std::unique_ptr<devices::virtio::VirtioBlock> block;
    try {
      devices::AsyncIo::ThreadStartHook confine_worker;
      if (config_.seccomp) {
        confine_worker = [] { security::confine_thread(security::ThreadKind::kDiskWorker); };
      }
      auto io = image.create_io(devices::virtio::VirtioBlock::kQueueSize, to_engine(disk.io_engine),
                                std::move(confine_worker));
      const std::string what = image.describe();
      spdlog::debug("{}: {} ({} bytes{}{}), {}", name, disk.path, image.size(),
                    what.empty() ? "" : ", ", what, io->name());
      devices::virtio::BlockOptions options{image.read_only(), disk.serial,
                                            to_rate_limit(disk.rate_limit)};
      block = std::make_unique<devices::virtio::VirtioBlock>(memory, loop, image.size(),
                                                             std::move(io), options, name);
    } catch (const Error& e) {
      fail("--disk {}", e.what());
    }
    blocks.push_back(block.get());
    plug_virtio(std::move(block), "virtio-blk " + name, fmt::format("disk{}", i));
  }
}

void Machine::Impl::create_nics() {
  for (size_t i = 0; i < config_.nets.size(); ++i) {
    const NetConfig& net = config_.nets[i];
    const std::string name = fmt::format("eth{} ({})", i, net.tap);
    const MacAddress mac = net.mac.value_or(stable_mac(net.tap));
    std::unique_ptr<devices::virtio::VirtioNet> nic;
    try {
      std::unique_ptr<devices::Tap> tap = std::move(host_.taps[i]);
      spdlog::debug("{}: mac {}{}", name, format_mac(mac), tap->created() ? ", tap created" : "");
      nic = std::make_unique<devices::virtio::VirtioNet>(
          memory, loop, std::move(tap), mac, name,
          devices::virtio::NetRateLimits{to_rate_limit(net.rx_rate_limit),
                                         to_rate_limit(net.tx_rate_limit)});
    } catch (const Error& e) {
      fail("--net {}", e.what());
    }
    nics.push_back(nic.get());
    plug_virtio(std::move(nic), "virtio-net " + name, fmt::format("net{}", i));
  }
}

void Machine::Impl::create_vsock() {
  if (!config_.vsock) return;
  std::unique_ptr<devices::virtio::VirtioVsock> vsock;
  try {
    vsock = std::make_unique<devices::virtio::VirtioVsock>(loop, config_.vsock->guest_cid,
                                                           config_.vsock->uds_path, "vsock0");
  } catch (const Error& e) {
    fail("--vsock {}", e.what());
  }
  plug_virtio(std::move(vsock), fmt::format("virtio-vsock cid {}", config_.vsock->guest_cid),
              "vsock");
}

void Machine::Impl::create_vhost_user_devices() {
  using devices::vhost_user::BackendChannel;
  using devices::vhost_user::VhostUserDevice;
  // What a virtiofsd says goes to the log, named by its share. Watched until its pipe ends.
  for (devices::Virtiofsd& process : host_.virtiofsds) {
    const int fd = process.log_fd();
    loop.add(fd, EPOLLIN, [this, &process, fd](uint32_t events) {
      for (const std::string& line : process.read_log()) {
        spdlog::warn("virtiofsd of {}: {}", process.name(), line);
      }
      if ((events & (EPOLLHUP | EPOLLERR)) != 0) loop.remove(fd);
    });
  }
  // host_.vhost_user_sockets holds the shares' sockets, then --vhost-user's, in config order.
  size_t socket = 0;
  const auto connect = [&](const std::string& name, devices::vhost_user::DeviceSpec spec) {
    auto channel =
        std::make_unique<BackendChannel>(std::move(host_.vhost_user_sockets.at(socket++)), name);
    return std::make_unique<VhostUserDevice>(memory, loop, std::move(channel), std::move(spec));
  };
  size_t virtiofsd = 0;  // the next share's own virtiofsd in host_.virtiofsds
  for (const ShareConfig& share : config_.shares) {
    const bool own_virtiofsd = !share.host_dir.empty();
    const std::string name =
        own_virtiofsd ? fmt::format("virtio-fs {} ({})", share.tag, share.host_dir)
                      : fmt::format("virtio-fs {} (socket={})", share.tag, share.socket_path);
    std::unique_ptr<VhostUserDevice> device;
    try {
      device = connect(name, devices::vhost_user::fs_device_spec(share.tag, 1));
    } catch (const Error& e) {
      // A virtiofsd that could not start says why on stderr and exits; say how it ended too.
      std::string ended;
      if (own_virtiofsd) {
        if (auto how = host_.virtiofsds.at(virtiofsd).exit_description()) ended = " (" + *how + ")";
      }
      fail("--share {}:{}: {}{}", own_virtiofsd ? share.host_dir : "socket=" + share.socket_path,
           share.tag, e.what(), ended);
    }
    if (own_virtiofsd) ++virtiofsd;
    plug_virtio(std::move(device), name, "fs/" + share.tag);
  }
  for (size_t i = 0; i < config_.vhost_user.size(); ++i) {
    const VhostUserConfig& config = config_.vhost_user[i];
    const bool fs = config.type == VhostUserConfig::Type::kFs;
    const std::string name = fmt::format("vhost-user {} (socket={})",
                                         fs ? "fs " + config.tag : "blk", config.socket_path);
    std::unique_ptr<VhostUserDevice> device;
    try {
      device = connect(name, fs ? devices::vhost_user::fs_device_spec(config.tag, 1)
                                : devices::vhost_user::blk_device_spec());
    } catch (const Error& e) {
      fail("--vhost-user socket={}: {}", config.socket_path, e.what());
    }
    plug_virtio(std::move(device), name, fmt::format("vhost-user{}", i));
  }
}

namespace {

// `fd` if epoll can watch it (a pipe, a terminal, a socket), else the read end of an empty pipe:
// a console port's input from a regular file or /dev/null reads as an immediate end of file.
UniqueFd pollable_input(int fd, const std::string& name) {
  const UniqueFd probe(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event event{};
  event.events = EPOLLIN;
  if (probe && ::epoll_ctl(probe.get(), EPOLL_CTL_ADD, fd, &event) == 0) {
    UniqueFd duplicate(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!duplicate) throw_errno(name);
    return duplicate;
  }
  std::array<int, 2> ends{};
  if (::pipe2(ends.data(), O_CLOEXEC) != 0) throw_errno(name + ": pipe");
  ::close(ends[1]);
  return UniqueFd(ends[0]);
}

}  // namespace

void Machine::Impl::create_console() {
  using devices::virtio::ConsolePort;
  std::vector<ConsolePort> ports;
  if (config_.command) {
    console_fds.push_back(pollable_input(STDIN_FILENO, "the command's stdin"));
    console_fds.push_back(non_blocking_writer(STDOUT_FILENO, "the command's stdout"));
    console_fds.push_back(non_blocking_writer(STDERR_FILENO, "the command's stderr"));
    auto port = [&ports](const char* name) -> ConsolePort& {
      ports.emplace_back().name = name;
      return ports.back();
    };
    port(VMM_RUN_PORT_STDIN).input_fd = console_fds[0].get();
    port(VMM_RUN_PORT_STDOUT).output_fd = console_fds[1].get();
    port(VMM_RUN_PORT_STDERR).output_fd = console_fds[2].get();
    port(VMM_RUN_PORT_CONTROL).output_callback = [this](std::span<const uint8_t> bytes) {
      on_command_control(bytes);
    };
  } else if (config_.console.enabled) {
    console_fds.push_back(pollable_input(STDIN_FILENO, "--console (stdin)"));
    console_fds.push_back(non_blocking_writer(STDOUT_FILENO, "--console (stdout)"));
    ConsolePort& hvc0 = ports.emplace_back();
    hvc0.console = true;
    hvc0.input_fd = console_fds[0].get();
    hvc0.output_fd = console_fds[1].get();
  } else {
    return;
  }
  auto device = std::make_unique<devices::virtio::VirtioConsole>(memory, loop, std::move(ports),
                                                                 "virtio-console");
  console_device = device.get();
  plug_virtio(std::move(device), "virtio-console", "console");
}

// Loop thread: the command's control port.
void Machine::Impl::on_command_control(std::span<const uint8_t> bytes) {
  const std::optional<int> status = command_control.feed(bytes);
  if (!status) return;
  MachineExit exit;
  exit.reason = MachineExit::Reason::kCommandExit;
  exit.debug_code = *status;
  latch.set(exit);
}

void Machine::Impl::signal_command(int signal) {
  if (!config_.command || console_device == nullptr) return;
  loop.post([this, signal] { send_command_signal(signal); });
}

// Loop thread.
void Machine::Impl::send_command_signal(int signal) {
  const std::string line = CommandControl::signal_line(signal);
  if (!console_device->send(
          kCommandControlPort,
          std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()))) {
    spdlog::warn("the command's control port is full: signal {} not passed on", signal);
  }
}

void Machine::Impl::plug_virtio(std::unique_ptr<devices::virtio::VirtioDevice> device,
                                const std::string& name, std::string metrics_name) {
  metered_devices.emplace_back(std::move(metrics_name), device.get());
  const auto index = static_cast<uint32_t>(virtio_slots.size());
  virtio_slots.push_back(std::make_unique<VirtioMmioSlot>(
      vm, device_owner, mmio, memory, index, virtio_gsi(index), std::move(device), name));
}

void Machine::Impl::create_vcpus(const boot::BootCpuState* boot_state) {
  const auto supported = kvm.supported_cpuid();
  const size_t mmap_size = kvm.vcpu_mmap_size();
  for (uint32_t id = 0; id < config_.cpus; ++id) {
    auto vcpu = std::make_unique<kvm::Vcpu>(vm, id, mmap_size);
    if (boot_state) {
      vcpu->set_cpuid(boot::guest_cpuid(supported, id, config_.cpus));
      set_local_interrupts(*vcpu);
    }
    if (boot_state && id == 0) {
      vcpu->set_msrs(boot_state->msrs);
      vcpu->set_sregs(boot_state->sregs);
      vcpu->set_regs(boot_state->regs);
      vcpu->set_fpu(boot_state->fpu);
    }
    vcpus.push_back(std::move(vcpu));
    vcpu_exits.push_back(std::make_unique<VcpuExitCounts>());
  }
}

// Runs on the loop thread, before start() launches it.
void Machine::Impl::watch_console() {
  console_output->watch();
  loop.add(serial_refill.fd(), EPOLLIN, [this](uint32_t) {
    serial_refill.consume();
    serial->enqueue_input({});
    feed_console_input();
    if (stdin_watched && serial->input_space() > 0) loop.modify(STDIN_FILENO, EPOLLIN);
  });
  loop.add(console_input.fd(), EPOLLIN, [this](uint32_t) {
    console_input.consume();
    feed_console_input();
  });
  if (config_.console.enabled) terminal = RawTerminal::enter(STDIN_FILENO);
  if (config_.serial.mode != SerialConfig::Mode::kStdio) return;
  terminal = RawTerminal::enter(STDIN_FILENO);
  // Reading stdin pauses while the UART's input queue is full, and resumes on the refill request:
  // nothing typed is dropped.
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
      stdin_watched = false;
      return;
    }
    serial->enqueue_input(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
  };
  try {
    loop.add(STDIN_FILENO, EPOLLIN, read_stdin);
    stdin_watched = true;
  } catch (const Error& e) {
    // stdin is a regular file or /dev/null (epoll refuses those): no interactive input.
    spdlog::debug("console input not watched: {}", e.what());
  }
}

// Loop thread: moves what the UART has room for from send_console_input()'s queue (filled from
// any thread, the console callback's included). The queue's lock is not held while calling the
// UART.
void Machine::Impl::feed_console_input() {
  while (true) {
    const size_t space = serial->input_space();
    if (space == 0) return;
    std::vector<uint8_t> chunk;
    {
      MutexLock lock(input_mutex);
      const size_t n = std::min(space, pending_input.size());
      if (n == 0) return;
      chunk.assign(pending_input.begin(), pending_input.begin() + static_cast<ptrdiff_t>(n));
      pending_input.erase(pending_input.begin(), pending_input.begin() + static_cast<ptrdiff_t>(n));
    }
    // Only this thread takes space, so all of `chunk` fits.
    serial->enqueue_input(chunk);
  }
}

void Machine::Impl::arm_timeout() {
  if (config_.timeout_seconds == 0) return;
  timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer) throw_errno("timerfd_create");
  itimerspec spec{};
  spec.it_value.tv_sec = config_.timeout_seconds;
  if (::timerfd_settime(timer.get(), 0, &spec, nullptr) != 0) throw_errno("timerfd_settime");
  loop.add(timer.get(), EPOLLIN, [this](uint32_t) {
    MachineExit exit;
    exit.reason = MachineExit::Reason::kTimeout;
    latch.set(exit);
  });
}

// Where each vCPU and each virtio device was when the machine stopped without the guest's
// consent: the first clues to a guest that hangs or a device that stalls.
void Machine::Impl::log_where_things_stood() const {
  for (const auto& vcpu : vcpus) {
    try {
      const kvm_regs regs = vcpu->regs();
      spdlog::warn("vCPU {} stopped at rip {:#x} (rsp {:#x}, rflags {:#x})", vcpu->id(), regs.rip,
                   regs.rsp, regs.rflags);
    } catch (const Error& e) {
      spdlog::debug("vCPU {}: {}", vcpu->id(), e.what());
    }
  }
  for (const auto& slot : virtio_slots) spdlog::warn("{}: {}", slot->name(), slot->debug_state());
}

MachineState Machine::Impl::state() const {
  MutexLock lock(mutex);
  if (finished || latch.result()) return MachineState::kStopped;
  if (!started) return MachineState::kCreated;
  return paused ? MachineState::kPaused : MachineState::kRunning;
}

std::chrono::milliseconds Machine::Impl::uptime() const {
  MutexLock lock(mutex);
  if (!started) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_at);
}

MachineMetrics Machine::Impl::metrics() const {
  MachineMetrics metrics;
  for (const auto& [name, device] : metered_devices) {
    const devices::virtio::DeviceMetricsSnapshot counts = device->metrics();
    metrics.devices.push_back(
        {name, counts.requests, counts.bytes, counts.errors, counts.rate_limit_waits});
  }
  for (size_t i = 0; i < vcpu_exits.size(); ++i) {
    metrics.vcpus.push_back({static_cast<uint32_t>(i), vcpu_exits[i]->snapshot()});
  }
  const EventLoop::LongestHandler longest = loop.longest_handler();
  metrics.longest_handler = std::chrono::duration_cast<std::chrono::microseconds>(longest.duration);
  metrics.longest_handler_fd = longest.fd;
  metrics.uptime = uptime();
  return metrics;
}

MachineConfig Machine::Impl::config() const {
  MutexLock lock(config_mutex);
  return current_config;
}

void Machine::Impl::set_disk_rate_limit(size_t index, const RateLimitConfig& limit) {
  if (index >= blocks.size()) fail("no disk{}: the machine has {} disk(s)", index, blocks.size());
  {
    MutexLock lock(config_mutex);
    current_config.disks[index].rate_limit = limit;
  }
  // The device is the loop's: the change runs there, between two of its handlers.
  loop.post(
      [block = blocks[index], limit = to_rate_limit(limit)] { block->set_rate_limit(limit); });
}

void Machine::Impl::set_net_rate_limits(size_t index, const RateLimitConfig& rx,
                                        const RateLimitConfig& tx) {
  if (index >= nics.size()) fail("no net{}: the machine has {} NIC(s)", index, nics.size());
  {
    MutexLock lock(config_mutex);
    current_config.nets[index].rx_rate_limit = rx;
    current_config.nets[index].tx_rate_limit = tx;
  }
  loop.post([nic = nics[index],
             limits = devices::virtio::NetRateLimits{to_rate_limit(rx), to_rate_limit(tx)}] {
    nic->set_rate_limits(limits);
  });
}

void Machine::Impl::start() {
  MutexLock transition(transition_mutex);
  {
    MutexLock lock(mutex);
    if (started) fail("the machine was already started");
    if (finished || latch.result()) fail("the machine was stopped before it started");
    started = true;
    started_at = Clock::now();
  }
  try {
    loop.add(latch.fd(), EPOLLIN, [this](uint32_t) { loop.stop(); });
    loop.add(pause_request.fd(), EPOLLIN, [this](uint32_t) {
      pause_request.consume();
      gate.checkpoint();
    });
    watch_console();
    arm_timeout();
    const size_t run_size = kvm.vcpu_mmap_size();
    for (size_t i = 0; i < vcpus.size(); ++i) {
      threads.push_back(std::make_unique<VcpuThread>(*vcpus[i], run_size, pio, mmio, latch, gate,
                                                     *vcpu_exits[i], config_.seccomp));
    }
    spdlog::debug("+{:.3f} ms: starting {} vCPU(s)", ms_since_start(), vcpus.size());
    for (auto& thread : threads) thread->start();
    loop_thread = std::thread([this] { run_loop(); });
  } catch (const std::exception& e) {
    latch.fail(e.what());
    for (auto& thread : threads) thread->stop();
    for (auto& thread : threads) thread->join();
    terminal.reset();
    {
      MutexLock lock(mutex);
      finished = true;
    }
    finished_cv.notify_all();
    throw;
  }
}

void Machine::Impl::run_loop() {
  ::pthread_setname_np(::pthread_self(), "vmm-loop");
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  try {
    if (config_.seccomp) security::confine_thread(security::ThreadKind::kEventLoop);
    loop.run();
  } catch (const std::exception& e) {
    latch.fail(fmt::format("event loop: {}", e.what()));
  }
  for (auto& thread : threads) thread->stop();
  for (auto& thread : threads) thread->join();
  // What the guest printed last (a test guest's verdict) reaches the sink before wait() returns;
  // a reader that stopped reading costs at most ConsoleOutput::kFlushStall.
  console_output->flush();
  // What the command wrote before its exit line, and any guest's last words on hvc0 (a reader
  // that stopped reading costs at most VirtioConsole::kFlushStall).
  if (console_device != nullptr) console_device->flush_output();
  terminal.reset();
  const auto exit = latch.result();
  if (exit && exit->reason == MachineExit::Reason::kTimeout) log_where_things_stood();
  spdlog::debug("guest ran for {:.3f} s: {}", std::chrono::duration<double>(uptime()).count(),
                exit ? exit->describe() : "no exit reason");
  {
    MutexLock lock(mutex);
    finished = true;
  }
  finished_cv.notify_all();
}

std::optional<MachineExit> Machine::Impl::wait(std::optional<std::chrono::milliseconds> timeout) {
  {
    MutexLock lock(mutex);
    if (!timeout) {
      while (!finished) lock.wait(finished_cv);
    } else {
      const auto deadline = std::chrono::steady_clock::now() + *timeout;
      while (!finished) {
        if (!lock.wait_until(finished_cv, deadline) && !finished) return std::nullopt;
      }
    }
  }
  {
    MutexLock join(join_mutex);
    if (loop_thread.joinable()) loop_thread.join();
  }
  MachineExit exit = latch.result().value_or(MachineExit{});
  exit.ran_command = config_.command.has_value();
  return exit;
}

void Machine::Impl::pause() {
  MutexLock transition(transition_mutex);
  pause_locked();
}

bool Machine::Impl::pause_locked() {
  {
    MutexLock lock(mutex);
    if (finished || latch.result()) fail("the machine has stopped");
    if (!started) fail("the machine has not been started");
    if (paused) return false;
  }
  if (!gate.request()) fail("the machine has stopped");
  for (auto& thread : threads) thread->kick();
  pause_request.signal();
  // Every vCPU thread and the loop thread.
  if (!gate.wait_parked(threads.size() + 1)) fail("the machine stopped while pausing");
  if (clock_adjustable) {
    try {
      paused_clock = vm.clock();
    } catch (const Error& e) {
      spdlog::warn("pause: the guest clock keeps running: {}", e.what());
    }
  }
  MutexLock lock(mutex);
  paused = true;
  return true;
}

void Machine::Impl::resume() {
  MutexLock transition(transition_mutex);
  resume_locked();
}

void Machine::Impl::resume_locked() {
  {
    MutexLock lock(mutex);
    if (finished || latch.result()) fail("the machine has stopped");
    if (!started) fail("the machine has not been started");
    if (!paused) return;
    paused = false;
  }
  if (paused_clock) {
    try {
      vm.set_clock(*paused_clock);
    } catch (const Error& e) {
      spdlog::warn("resume: the guest clock jumps: {}", e.what());
    }
    paused_clock.reset();
  }
  gate.release();
}

// Takes no transition lock: stop() must work while a pause() waits, and from a console callback.
void Machine::Impl::stop() {
  MachineExit exit;
  exit.reason = MachineExit::Reason::kStopped;
  latch.set(exit);
  bool never_started;
  {
    MutexLock lock(mutex);
    never_started = !started;
    if (never_started) finished = true;
  }
  if (never_started) finished_cv.notify_all();
}

void Machine::Impl::snapshot(const std::string& path, bool stay_paused) {
  MutexLock transition(transition_mutex);
  const bool paused_here = pause_locked();
  const auto begin = Clock::now();
  try {
    write_snapshot(path);
  } catch (const Error& e) {
    if (paused_here) resume_locked();
    fail("snapshot {}", e.what());
  }
  spdlog::info("snapshot {}: written in {:.1f} ms{}", path,
               std::chrono::duration<double, std::milli>(Clock::now() - begin).count(),
               paused_here && stay_paused ? "; the machine stays paused" : "");
  if (paused_here && !stay_paused) resume_locked();
}

// With the machine paused: every vCPU parked outside KVM_RUN, its last exit completed
// (VcpuThread::settle), and the loop thread parked, which makes this thread the devices' owner
// until the resume.
StateArchive Machine::Impl::save_state(SnapshotManifest& manifest) {
  // The disks' requests in flight complete first: their interrupts then sit in the interrupt
  // controllers' saved state, and nothing lands in RAM after it is written.
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  for (const auto& slot : virtio_slots) slot->quiesce(deadline);
  StateArchive archive;
  auto save = [&archive](const std::string& name, const auto& device) {
    StateWriter out;
    device.save_state(out);
    archive.add(name, out.take());
  };
  {
    StateWriter out;
    vm.save_state().save(out);
    archive.add("vm", out.take());
  }
  for (const auto& vcpu : vcpus) {
    const kvm::VcpuState vcpu_state = vcpu->save_state(kvm.msrs_to_save());
    if (vcpu->id() == 0) manifest.cpuid = vcpu_state.cpuid;
    StateWriter out;
    vcpu_state.save(out);
    archive.add(fmt::format("vcpu{}", vcpu->id()), out.take());
  }
  save("serial", *serial);
  save("i8042", *i8042);
  save("rtc", *rtc);
  for (size_t i = 0; i < virtio_slots.size(); ++i) {
    save(fmt::format("virtio{}", i), *virtio_slots[i]);
  }
  // A snapshot disk's overlay: which sectors the guest wrote (its bytes go to a file of their own).
  for (size_t i = 0; i < host_.disks.size(); ++i) {
    if (!host_.disks[i].has_overlay()) continue;
    StateWriter out;
    out.put_vector(host_.disks[i].overlay_runs());
    archive.add(overlay_section(i), out.take());
  }
  return archive;
}

void Machine::Impl::write_snapshot(const std::string& path) {
  SnapshotManifest manifest;
  manifest.created_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
  const StateArchive state = save_state(manifest);
  manifest.vmm_version = vmm_build_version();
  manifest.cpu = host_cpu_identity();
  manifest.machine = config();
  // A restored machine's config has the command line its snapshot recorded.
  if (!host_.cmdline.empty()) manifest.machine.cmdline = host_.cmdline;
  for (const devices::DiskImage& disk : host_.disks) manifest.disk_sizes.push_back(disk.size());
  write_snapshot_files(
      path, memory, state.serialize(), std::move(manifest), [this, &state](const std::string& dir) {
        for (size_t i = 0; i < host_.disks.size(); ++i) {
          if (!state.contains(overlay_section(i))) continue;
          StateReader in = state.reader(overlay_section(i));
          const auto runs = in.get_vector<devices::SectorRun>(kMaxOverlayRuns);
          const std::string file = snapshot_path(dir, overlay_file(i));
          host_.disks[i].save_overlay(create_snapshot_file(file).get(), runs, file);
        }
      });
}

void Machine::Impl::send_console_input(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  {
    MutexLock lock(input_mutex);
    pending_input.insert(pending_input.end(), bytes.begin(), bytes.end());
  }
  console_input.signal();
}

void Machine::Impl::shut_down() {
  stop();
  control.reset();
  wait(std::nullopt);
}

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

namespace {

// SIGPIPE held back on the calling thread while it lives: tearing a machine down writes what its
// devices still hold to their sinks (a console's pipe whose reader went away), and that must be an
// EPIPE, not a signal that ends the caller's process. A SIGPIPE raised meanwhile is consumed.
class SigpipeHeld {
 public:
  SigpipeHeld() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &previous_);
  }
  ~SigpipeHeld() {
    // One the caller held back itself is the caller's.
    const timespec now{};
    while (sigismember(&previous_, SIGPIPE) == 0 &&
           ::sigtimedwait(&pipe_, nullptr, &now) == SIGPIPE) {
    }
    ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SigpipeHeld(const SigpipeHeld&) = delete;
  SigpipeHeld& operator=(const SigpipeHeld&) = delete;

 private:
  sigset_t pipe_{};
  sigset_t previous_{};
};

}  // namespace

Machine::~Machine() {
  const SigpipeHeld held;
  impl_->shut_down();
  impl_.reset();
}

namespace {

void prepare_seccomp(const MachineConfig& config) {
  // The filters are compiled here, where a failure can still be reported; each thread installs
  // its own once set up (the caller's thread is left alone).
  if (config.seccomp) {
    security::prepare_seccomp_filters();
  } else {
    spdlog::info("seccomp filters are off: the machine's threads may make any system call");
  }
}

}  // namespace

std::unique_ptr<Machine> Machine::restore(const RestoreConfig& restore) {
  const auto begin = Clock::now();
  const std::string option = "--restore " + restore.snapshot_dir;
  SnapshotFiles files = read_snapshot_files(restore.snapshot_dir, "--restore");
  const MachineConfig config = restored_config(restore, files.manifest);
  validate_config(config);
  prepare_seccomp(config);
  HostResources host = HostResources::open_devices(config);
  for (size_t i = 0; i < host.disks.size(); ++i) {
    if (host.disks[i].size() != files.manifest.disk_sizes[i]) {
      fail("--disk {}: {} bytes; the snapshot's guest had a disk of {} bytes there",
           config.disks[i].path, host.disks[i].size(), files.manifest.disk_sizes[i]);
    }
  }
  GuestMemory ram = GuestMemory::map_file(files.memory_path, config.memory_bytes);
  const int64_t now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const uint64_t advance = now_ns > files.manifest.created_unix_ns
                               ? static_cast<uint64_t>(now_ns - files.manifest.created_unix_ns)
                               : 0;
  auto impl = std::make_unique<Impl>(config, std::move(host), std::move(ram));
  impl->snapshot_dir = restore.snapshot_dir;
  try {
    impl->assemble_restored(files.state, advance);
  } catch (const Error& e) {
    fail("{}: {}", option, e.what());
  }
  if (!config.api_socket.empty()) {
    impl->control = std::make_unique<ControlServer>(config.api_socket, *impl);
  }
  spdlog::info("{}: restored in {:.1f} ms (the guest's clock moves {:.1f} s forward)", option,
               std::chrono::duration<double, std::milli>(Clock::now() - begin).count(),
               static_cast<double>(advance) / 1e9);
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

std::unique_ptr<Machine> Machine::create(const MachineConfig& config) {
  validate_config(config);
  prepare_seccomp(config);
  HostResources host = HostResources::open(config);
  // A vhost-user backend maps guest RAM: it must be a memfd.
  const bool shared_ram = !config.shares.empty() || !config.vhost_user.empty();
  auto impl = std::make_unique<Impl>(
      config, std::move(host),
      GuestMemory::allocate(config.memory_bytes, shared_ram ? GuestMemory::Backing::kMemfd
                                                            : GuestMemory::Backing::kAuto));
  impl->assemble();
  if (!config.api_socket.empty()) {
    impl->control = std::make_unique<ControlServer>(config.api_socket, *impl);
  }
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

void Machine::start() {
  impl_->start();
}

std::optional<MachineExit> Machine::wait(std::optional<std::chrono::milliseconds> timeout) {
  return impl_->wait(timeout);
}

MachineExit Machine::run() {
  start();
  return *wait();
}

void Machine::pause() {
  impl_->pause();
}

void Machine::resume() {
  impl_->resume();
}

void Machine::stop() {
  impl_->stop();
}

void Machine::snapshot(const std::string& path, bool stay_paused) {
  impl_->snapshot(path, stay_paused);
}

MachineMetrics Machine::metrics() const {
  return impl_->metrics();
}

void Machine::set_disk_rate_limit(size_t index, const RateLimitConfig& limit) {
  impl_->set_disk_rate_limit(index, limit);
}

void Machine::set_net_rate_limits(size_t index, const RateLimitConfig& rx,
                                  const RateLimitConfig& tx) {
  impl_->set_net_rate_limits(index, rx, tx);
}

MachineState Machine::state() const {
  return impl_->state();
}

MachineConfig Machine::config() const {
  return impl_->config();
}

void Machine::send_console_input(std::span<const uint8_t> bytes) {
  impl_->send_console_input(bytes);
}

void Machine::signal_command(int signal) {
  impl_->signal_command(signal);
}

}  // namespace vmm
