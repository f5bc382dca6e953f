// Writes the seed corpus of the snapshot_state fuzz target (snapshot_state_fuzz.cpp): each part of
// a snapshot as vmm itself writes it (a manifest, a state file, a vCPU's and the VM's KVM state,
// the legacy devices' and virtio-mmio transports' state from devices a driver has set up), in the
// target's input encoding (snapshot_state_input.hpp). Rerun after a state layout or that encoding
// changes:
//
//   build-fuzz/tests/fuzz/snapshot_state_seeds tests/fuzz/corpus/snapshot_state

#include <linux/kvm.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/kvm/vcpu_state.hpp"
#include "base/kvm/vm_state.hpp"
#include "base/util/error.hpp"
#include "base/util/state_archive.hpp"
#include "base/util/state_stream.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial_16550.hpp"
#include "devices/virtio/block_request.hpp"
#include "devices/virtio/net_header.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/snapshot_state_input.hpp"
#include "tests/fuzz/virtio_harness.hpp"
#include "vmm/machine/snapshot_manifest.hpp"

namespace vmm::fuzz::snapshot {
namespace {

namespace virtio = devices::virtio;

using Bytes = std::vector<uint8_t>;

// A number, little-endian like the x86 host.
template <typename T>
void put(Bytes& bytes, T value) {
  static_assert(std::is_arithmetic_v<T>);
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  bytes.insert(bytes.end(), p, p + sizeof(T));
}

void append(Bytes& bytes, std::span<const uint8_t> more) {
  bytes.insert(bytes.end(), more.begin(), more.end());
}

// A port access in port_access.hpp's encoding (a near offset).
void append_access(Bytes& bytes, uint8_t offset, uint8_t width, bool write, uint64_t value = 0) {
  put<uint8_t>(bytes, static_cast<uint8_t>((width << 4) | (write ? 1 : 0)));
  put(bytes, offset);
  if (write) put(bytes, value);
}

void port_out(devices::BusDevice& device, uint64_t offset, uint8_t value) {
  device.write(offset, std::span<const uint8_t>(&value, 1));
}

uint8_t port_in(devices::BusDevice& device, uint64_t offset) {
  uint8_t value = 0;
  device.read(offset, std::span<uint8_t>(&value, 1));
  return value;
}

template <typename Saver>
Bytes saved(const Saver& saver) {
  StateWriter writer;
  saver.save_state(writer);
  return writer.take();
}

class Corpus {
 public:
  explicit Corpus(std::string dir) : dir_(std::move(dir)) {}

  void write(const std::string& name, Parser parser, std::span<const uint8_t> body) const {
    const std::string path = dir_ + "/" + name;
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    file.put(static_cast<char>(parser));
    file.write(reinterpret_cast<const char*>(body.data()),
               static_cast<std::streamsize>(body.size()));
    if (!file.flush()) fail("{}: could not be written", path);
  }

 private:
  std::string dir_;
};

// Leaves 0 and 1 of an Intel CPU (family 6, model 0x55) and a leaf with an index.
std::vector<kvm_cpuid_entry2> sample_cpuid() {
  std::vector<kvm_cpuid_entry2> cpuid(3);
  cpuid[0] = {.function = 0, .eax = 0xd, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69};
  cpuid[1] = {.function = 1, .eax = 0x00050654, .ebx = 0x00010800, .ecx = 0xfeda3203};
  cpuid[2] = {.function = 7, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .ebx = 0xd19f4fbb};
  return cpuid;
}

SnapshotManifest sample_manifest(bool devices) {
  SnapshotManifest manifest;
  manifest.vmm_version = vmm_build_version();
  manifest.cpuid = sample_cpuid();
  manifest.cpu = kvm::cpu_identity(manifest.cpuid);
  manifest.created_unix_ns = 1'700'000'000'000'000'000;
  MachineConfig& machine = manifest.machine;
  machine.kernel_path = "/boot/vmlinuz";
  machine.memory_bytes = uint64_t{256} << 20;
  if (devices) {
    machine.cpus = 2;
    machine.cmdline = "console=ttyS0 panic=-1 root=/dev/vda rw";
    machine.disks.push_back({.path = "/var/lib/vmm/root.img",
                             .serial = "root",
                             .snapshot = DiskConfig::Snapshot::kFile});
    machine.disks.push_back({.path = "/var/lib/vmm/data.img",
                             .read_only = true,
                             .io_engine = DiskConfig::IoEngine::kThreadPool});
    manifest.disk_sizes = {uint64_t{1} << 30, uint64_t{64} << 20};
    machine.nets.push_back(
        {.tap = "tap0", .mac = std::array<uint8_t, 6>{0x52, 0x54, 0, 0x12, 0x34, 0x56}});
    machine.nets.push_back({.tap = "tap1"});
    machine.vsock = VsockConfig{.guest_cid = 3, .uds_path = "/run/vmm/vsock.sock"};
  }
  manifest.memory_file_bytes = machine.memory_bytes;
  manifest.state_file_bytes = 12345;
  manifest.state_checksum = 0x0123456789abcdef;
  return manifest;
}

kvm::VcpuState sample_vcpu(bool xsave) {
  kvm::VcpuState state;
  state.regs.rip = 0x1000000;
  state.regs.rsp = 0x8000;
  state.regs.rflags = 2;
  state.sregs.cr0 = 0x80050033;
  state.sregs.cr4 = 0x3406f0;
  state.sregs.efer = 0xd01;
  state.sregs.cs = {.selector = 0x10, .type = 0xb, .present = 1, .s = 1, .l = 1, .g = 1};
  if (xsave) {
    kvm::XsaveArea area(kvm::VcpuState::kMinXsaveBytes);
    const uint16_t fcw = 0x37f;
    const uint32_t mxcsr = 0x1f80;
    std::memcpy(area.data(), &fcw, sizeof(fcw));
    std::memcpy(area.data() + 24, &mxcsr, sizeof(mxcsr));
    state.fpu = std::move(area);
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0] = {.xcr = 0, .value = 7};
    state.xcrs = xcrs;
    state.mp_state.mp_state = KVM_MP_STATE_RUNNABLE;
  } else {
    state.fpu = kvm_fpu{.fcw = 0x37f, .mxcsr = 0x1f80};
    state.mp_state.mp_state = KVM_MP_STATE_HALTED;
  }
  state.msrs = {{0xc0000080, 0xd01}, {0x10, 123456789}, {0x1b, 0xfee00900}};
  state.lapic.regs[0x20] = 0;  // APIC ID 0
  state.lapic.regs[0xf0] = 0xff;
  state.lapic.regs[0xf1] = 0x01;  // spurious vector register: enabled
  state.cpuid = sample_cpuid();
  state.tsc_khz = 2'000'000;
  return state;
}

kvm::VmState sample_vm(uint32_t pit_flags) {
  kvm::VmState state;
  state.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  state.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  state.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  state.pit.flags = pit_flags;
  state.pit.channels[0].count = 0x4a9;
  state.clock_ns = 5'000'000'000;
  state.realtime_ns = 1'700'000'000'000'000'000;
  return state;
}

template <typename State>
Bytes saved_kvm_state(const State& state) {
  StateWriter writer;
  state.save(writer);
  return writer.take();
}

// A UART Linux has set up (115200 8N1, FIFO, interrupts), with input queued and output buffered,
// or with the FIFO off and a byte waiting in RBR.
Bytes serial_seed(bool fifo) {
  FakeInterruptLine irq;
  devices::Serial16550 uart(irq);
  port_out(uart, 3, 0x80);  // LCR: DLAB
  port_out(uart, 0, 1);     // divisor 1
  port_out(uart, 1, 0);
  port_out(uart, 3, 0x03);                // 8N1
  port_out(uart, 2, fifo ? 0x87 : 0x00);  // FCR: FIFO on, trigger 8
  port_out(uart, 1, 0x03);                // IER: RX data and THRE
  port_out(uart, 4, 0x0b);                // MCR: DTR, RTS, OUT2
  port_out(uart, 7, 0x5a);                // scratch
  const std::string_view input = "root\n";
  uart.enqueue_input({reinterpret_cast<const uint8_t*>(input.data()), input.size()});
  for (const char c : std::string_view("login: ")) port_out(uart, 0, static_cast<uint8_t>(c));
  Bytes bytes = saved(uart);
  append_access(bytes, 2, 1, false);      // IIR
  append_access(bytes, 0, 1, false);      // RBR
  append_access(bytes, 5, 1, false);      // LSR
  append_access(bytes, 0, 1, true, 'x');  // THR
  return bytes;
}

// A controller that answered a self-test and waits for a command's data byte, or that holds its
// command byte for the guest to read.
Bytes i8042_seed(bool pending_command) {
  FakePlatformEvents events;
  FakeInterruptLine irq;
  devices::I8042 controller(events, &irq);
  constexpr uint64_t kData = 0, kCommand = 4;
  port_out(controller, kCommand, 0xaa);  // self-test: 0x55 queued
  if (pending_command) {
    port_out(controller, kCommand, 0x60);  // write the command byte: waits for it
  } else {
    port_in(controller, kData);
    port_out(controller, kCommand, 0x20);  // read the command byte
  }
  Bytes bytes{1};  // with the keyboard IRQ line
  append(bytes, saved(controller));
  append_access(bytes, 4, 1, false);
  append_access(bytes, 0, 1, pending_command, 0x47);
  return bytes;
}

// A clock the guest set (SET raised, the time staged) or set and let run again (an offset from
// the host's).
Bytes rtc_seed(bool staged) {
  constexpr time_t kHostClock = 1'700'000'000;
  devices::CmosRtc rtc([] { return kHostClock; });
  constexpr uint64_t kIndex = 0, kData = 1;
  auto set = [&rtc](uint8_t index, uint8_t value) {
    port_out(rtc, kIndex, index);
    port_out(rtc, kData, value);
  };
  set(0x0b, 0x82);  // register B: SET, 24-hour, BCD
  set(0x00, 0x30);  // seconds
  set(0x02, 0x12);  // minutes
  set(0x04, 0x23);  // hours
  set(0x09, 0x24);  // year
  if (!staged) set(0x0b, 0x02);
  set(0x0e, 0x42);  // CMOS RAM
  Bytes bytes;
  put<uint32_t>(bytes, static_cast<uint32_t>(kHostClock));
  append(bytes, saved(rtc));
  for (const uint8_t index : {0x00, 0x0a, 0x0b, 0x0c}) {
    append_access(bytes, 0, 1, true, index);
    append_access(bytes, 1, 1, false);
  }
  return bytes;
}

// virtio-mmio registers (virtio 1.2, 4.2.2).
constexpr uint64_t kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014, kDriverFeatures = 0x020,
                   kDriverFeaturesSel = 0x024, kQueueSel = 0x030, kQueueNum = 0x038,
                   kQueueReady = 0x044, kStatus = 0x070, kQueueDescLow = 0x080,
                   kQueueDriverLow = 0x090, kQueueDeviceLow = 0x0a0;
constexpr uint16_t kQueueSize = 16;
constexpr uint64_t kDataArea = 0x10000;  // above three queues' rings (stacked_queues)

// Guest RAM for the virtio seeds, zeroed.
class SeedRam {
 public:
  SeedRam()
      : bytes_(kRamSize), memory_(GuestMemory::from_regions({{0, kRamSize, bytes_.data()}})) {}
  const GuestMemory& memory() const { return memory_; }
  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  GuestMemory memory_;
};

// A guest driver of one device in a VirtioRig: sets it up as Linux does and makes requests.
class Driver {
 public:
  Driver(SeedRam& ram, VirtioKind kind) : ram_(ram), rig_(ram.memory(), kind) {
    for (const virtio::QueueConfig& config : stacked_queues(rig_.queue_count(), kQueueSize)) {
      queues_.emplace_back(ram.memory(), config);
    }
  }

  // Up to FEATURES_OK and the first `ready_queues` queues, or on to DRIVER_OK.
  void initialize(size_t ready_queues, bool driver_ok) {
    w32(kStatus, virtio::kStatusAcknowledge);
    w32(kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    w32(kDeviceFeaturesSel, 1);
    const uint64_t high = r32(kDeviceFeatures);
    w32(kDeviceFeaturesSel, 0);
    const uint64_t features = high << 32 | r32(kDeviceFeatures);
    w32(kDriverFeaturesSel, 1);
    w32(kDriverFeatures, static_cast<uint32_t>(features >> 32));
    w32(kDriverFeaturesSel, 0);
    w32(kDriverFeatures, static_cast<uint32_t>(features));
    const uint32_t features_ok =
        virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk;
    w32(kStatus, features_ok);
    for (size_t q = 0; q < ready_queues; ++q) {
      const virtio::QueueConfig& config = queues_[q].config();
      w32(kQueueSel, static_cast<uint32_t>(q));
      w32(kQueueNum, config.size);
      w64(kQueueDescLow, config.desc_table);
      w64(kQueueDriverLow, config.avail_ring);
      w64(kQueueDeviceLow, config.used_ring);
      w32(kQueueReady, 1);
    }
    if (driver_ok) w32(kStatus, features_ok | virtio::kStatusDriverOk);
  }

  QueueDriver& queue(size_t q) { return queues_[q]; }
  uint64_t data(uint64_t offset) const { return kDataArea + offset; }
  void write(uint64_t gpa, std::span<const uint8_t> bytes) { ram_.memory().write(gpa, bytes); }
  void notify(size_t q) {
    w32(virtio::MmioTransport::kQueueNotifyOffset, static_cast<uint32_t>(q));
    devices::testing::run_until_idle(rig_.loop());
  }

  // The kVirtio input: RAM as it is now and the transport's state, as a snapshot takes it, then
  // operations that run the restored device.
  Bytes seed(VirtioKind kind) {
    devices::testing::run_until_idle(rig_.loop());
    rig_.transport().quiesce(std::chrono::steady_clock::now() + std::chrono::seconds(5));
    const Bytes state = saved(rig_.transport());
    Bytes bytes{static_cast<uint8_t>(kind)};
    append_ram_chunks(bytes);
    put(bytes, static_cast<uint32_t>(state.size()));
    append(bytes, state);
    const uint8_t operations[] = {kRunLoop, kNotify, 0, kRunLoop};  // the notify is of queue 0
    append(bytes, std::span<const uint8_t>(operations));
    return bytes;
  }

 private:
  uint32_t r32(uint64_t offset) {
    uint32_t value = 0;
    rig_.transport().read(offset, {reinterpret_cast<uint8_t*>(&value), sizeof(value)});
    return value;
  }
  void w32(uint64_t offset, uint32_t value) {
    rig_.transport().write(offset, {reinterpret_cast<const uint8_t*>(&value), sizeof(value)});
  }
  void w64(uint64_t low_register, uint64_t value) {
    w32(low_register, static_cast<uint32_t>(value));
    w32(low_register + 4, static_cast<uint32_t>(value >> 32));
  }

  // The RAM's non-zero runs (gaps under 16 bytes bridged), as chunks: u8 count, then each.
  void append_ram_chunks(Bytes& bytes) const {
    const std::span<const uint8_t> ram = ram_.bytes();
    std::vector<std::pair<size_t, size_t>> runs;  // [begin, end)
    for (size_t i = 0; i < ram.size(); ++i) {
      if (ram[i] == 0) continue;
      if (!runs.empty() && i - runs.back().second < 16 && i - runs.back().first < 0xffff) {
        runs.back().second = i + 1;
      } else {
        runs.emplace_back(i, i + 1);
      }
    }
    if (runs.size() > 0xff) fail("{} RAM chunks: more than a seed holds", runs.size());
    bytes.push_back(static_cast<uint8_t>(runs.size()));
    for (const auto& [begin, end] : runs) {
      put(bytes, static_cast<uint32_t>(begin));
      put(bytes, static_cast<uint16_t>(end - begin));
      append(bytes, ram.subspan(begin, end - begin));
    }
  }

  SeedRam& ram_;
  VirtioRig rig_;
  std::vector<QueueDriver> queues_;
};

// virtio-blk: a read done, a write made available but not notified yet (the restored device
// finds it), or a driver that has set up the queue but not yet written DRIVER_OK.
Bytes block_seed(bool driver_ok) {
  SeedRam ram;
  Driver driver(ram, kBlock);
  driver.initialize(1, driver_ok);
  if (!driver_ok) return driver.seed(kBlock);
  QueueDriver& queue = driver.queue(0);
  for (const uint32_t type : {virtio::kBlkTypeIn, virtio::kBlkTypeOut}) {
    const auto head = static_cast<uint16_t>(3 * type);
    const uint64_t base = driver.data(0x1000 * type);
    Bytes header;
    put(header, type);
    put<uint32_t>(header, 0);
    put<uint64_t>(header, 8 * type);  // sector
    driver.write(base, header);
    const uint16_t data_flags = type == virtio::kBlkTypeIn ? virtio::kVirtqDescFWrite : 0;
    queue.desc(head, base, 16, virtio::kVirtqDescFNext, head + 1);
    queue.desc(head + 1, base + 0x100, 512, virtio::kVirtqDescFNext | data_flags, head + 2);
    queue.desc(head + 2, base + 0x300, 1, virtio::kVirtqDescFWrite, 0);
    queue.publish(head);
    if (type == virtio::kBlkTypeIn) driver.notify(0);
  }
  return driver.seed(kBlock);
}

// virtio-net: receive buffers the device holds, waiting for packets, and a packet to send made
// available but not notified yet.
Bytes net_seed() {
  SeedRam ram;
  Driver driver(ram, kNet);
  driver.initialize(2, true);
  for (uint16_t i = 0; i < 4; ++i) {
    driver.queue(0).desc(i, driver.data(0x800 * i), 1526, virtio::kVirtqDescFWrite, 0);
    driver.queue(0).publish(i);
  }
  driver.notify(0);
  Bytes frame(virtio::kNetHdrSize + 60, 0);
  std::fill(frame.begin() + virtio::kNetHdrSize, frame.begin() + virtio::kNetHdrSize + 6, 0xff);
  driver.write(driver.data(0x4000), frame);
  driver.queue(1).desc(0, driver.data(0x4000), static_cast<uint32_t>(frame.size()), 0, 0);
  driver.queue(1).publish(0);
  return driver.seed(kNet);
}

// virtio-vsock: receive and event buffers made available and notified.
Bytes vsock_seed() {
  SeedRam ram;
  Driver driver(ram, kVsock);
  driver.initialize(3, true);
  for (uint16_t i = 0; i < 4; ++i) {
    driver.queue(0).desc(i, driver.data(0x1000 * i), 0x1000, virtio::kVirtqDescFWrite, 0);
    driver.queue(0).publish(i);
  }
  for (uint16_t i = 0; i < 2; ++i) {
    driver.queue(2).desc(i, driver.data(0x8000 + 0x10 * i), 8, virtio::kVirtqDescFWrite, 0);
    driver.queue(2).publish(i);
  }
  driver.notify(0);
  driver.notify(2);
  return driver.seed(kVsock);
}

Bytes text(const std::string& json) {
  return {json.begin(), json.end()};
}

void write_corpus(const Corpus& corpus) {
  corpus.write("manifest_devices", kManifest, text(manifest_to_json(sample_manifest(true))));
  corpus.write("manifest_minimal", kManifest, text(manifest_to_json(sample_manifest(false))));

  StateArchive archive;
  archive.add("vm", saved_kvm_state(sample_vm(0)));
  archive.add("vcpu0", saved_kvm_state(sample_vcpu(true)));
  archive.add("vcpu1", saved_kvm_state(sample_vcpu(false)));
  const Bytes file = archive.serialize();
  Bytes as_written{0};
  append(as_written, file);
  corpus.write("archive", kArchive, as_written);
  Bytes without_checksum{kArchiveAppendChecksum};
  append(without_checksum, std::span<const uint8_t>(file).first(file.size() - sizeof(uint64_t)));
  corpus.write("archive_checksum_appended", kArchive, without_checksum);

  corpus.write("vcpu_xsave", kVcpu, saved_kvm_state(sample_vcpu(true)));
  corpus.write("vcpu_fpu", kVcpu, saved_kvm_state(sample_vcpu(false)));
  corpus.write("vm", kVm, saved_kvm_state(sample_vm(0)));
  corpus.write("vm_hpet_legacy", kVm, saved_kvm_state(sample_vm(KVM_PIT_FLAGS_HPET_LEGACY)));

  corpus.write("serial_fifo", kSerial, serial_seed(true));
  corpus.write("serial_no_fifo", kSerial, serial_seed(false));
  corpus.write("i8042_pending_command", kI8042, i8042_seed(true));
  corpus.write("i8042_output", kI8042, i8042_seed(false));
  corpus.write("rtc_staged", kRtc, rtc_seed(true));
  corpus.write("rtc_running", kRtc, rtc_seed(false));

  corpus.write("virtio_block", kVirtio, block_seed(true));
  corpus.write("virtio_block_negotiating", kVirtio, block_seed(false));
  corpus.write("virtio_net", kVirtio, net_seed());
  corpus.write("virtio_vsock", kVirtio, vsock_seed());
}

}  // namespace
}  // namespace vmm::fuzz::snapshot

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR (the seed corpus: tests/fuzz/corpus/snapshot_state)\n",
                 argv[0]);
    return 2;
  }
  vmm::fuzz::quiet_logs();
  try {
    vmm::fuzz::snapshot::write_corpus(vmm::fuzz::snapshot::Corpus(argv[1]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "snapshot_state_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
