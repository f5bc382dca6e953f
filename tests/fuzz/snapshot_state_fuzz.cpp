// The parsers of a snapshot, a file from outside: the manifest (parse_manifest), the state file
// (StateArchive::parse) and the loaders of its sections: a vCPU's and the VM's KVM state, the
// legacy devices' restore_state (16550 UART, i8042, CMOS RTC), and a virtio-mmio transport's, its
// queues' and its device's (virtio-blk, virtio-net, virtio-vsock) over fuzzer-written RAM. Bad
// input must be refused with vmm::Error, nothing else. What is accepted must be usable, and vmm
// must accept what it writes: the manifest and the state file write back as what they parse
// back to; a loader that keeps what it reads saves exactly the bytes it read; a restored device
// takes the guest's accesses; a restored transport's own snapshot restores.
//
// Input: u8 parser (snapshot::Parser, snapshot_state_input.hpp), then
//   kManifest  the manifest's text
//   kArchive   u8 flags (kArchiveAppendChecksum: the target appends the checksum of what follows,
//              so mutations get past it), then the state file
//   kVcpu, kVm a section
//   kSerial    the section, then port accesses (port_access.hpp) up to the end
//   kI8042     u8 (bit 0: with a keyboard IRQ line), the section, then port accesses
//   kRtc       u32 host clock (seconds since the epoch), the section, then port accesses
//   kVirtio    u8 device (VirtioKind), u8 n and n RAM chunks (write_ram_chunk), u32 n and the n
//              bytes of the section, then operations (VirtioOp)

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/kvm/vcpu_state.hpp"
#include "base/kvm/vm_state.hpp"
#include "base/util/error.hpp"
#include "base/util/state_archive.hpp"
#include "base/util/state_stream.hpp"
#include "devices/legacy/cmos_rtc.hpp"
#include "devices/legacy/i8042.hpp"
#include "devices/legacy/serial_16550.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "tests/fuzz/port_access.hpp"
#include "tests/fuzz/snapshot_state_input.hpp"
#include "vmm/machine/snapshot_manifest.hpp"

namespace vmm::fuzz::snapshot {
namespace {

// vmm refused what it wrote itself: a restored machine could not be snapshotted and restored.
[[noreturn]] void refused_own_output(const char* what, const Error& error) {
  std::fprintf(stderr, "fuzz invariant failed: %s is refused: %s\n", what, error.what());
  std::abort();
}

void manifest(Reader& in) {
  const std::span<const uint8_t> bytes = in.bytes(in.remaining());
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  SnapshotManifest parsed;
  try {
    parsed = parse_manifest(text, "manifest.json");
  } catch (const Error&) {
    return;
  }
  const std::string written = manifest_to_json(parsed);
  try {
    const std::string again = manifest_to_json(parse_manifest(written, "manifest.json"));
    VMM_FUZZ_CHECK(again == written, "the manifest writes back as\n%s\nthen as\n%s",
                   written.c_str(), again.c_str());
  } catch (const Error& e) {
    refused_own_output("the manifest written back", e);
  }
}

void archive(Reader& in) {
  const bool append_checksum = (in.u8() & kArchiveAppendChecksum) != 0;
  const std::span<const uint8_t> bytes = in.bytes(in.remaining());
  std::vector<uint8_t> file(bytes.begin(), bytes.end());
  if (append_checksum) {
    const uint64_t checksum = fnv1a64(file);
    const auto* p = reinterpret_cast<const uint8_t*>(&checksum);
    file.insert(file.end(), p, p + sizeof(checksum));
  }
  StateArchive parsed;
  try {
    parsed = StateArchive::parse(file, "state");
  } catch (const Error&) {
    return;
  }
  const std::vector<uint8_t> written = parsed.serialize();
  try {
    VMM_FUZZ_CHECK(StateArchive::parse(written, "state").serialize() == written,
                   "the state file writes back as other bytes");
  } catch (const Error& e) {
    refused_own_output("the state file written back", e);
  }
}

// A loader of KVM state (VcpuState, VmState), which keeps every byte it accepts: what it saves
// must be the section it read.
template <typename State>
void kvm_state(Reader& in) {
  const std::span<const uint8_t> section = in.bytes(in.remaining());
  StateReader reader(section, "section");
  State state;
  try {
    state = State::load(reader);
  } catch (const Error&) {
    return;
  }
  StateWriter out;
  state.save(out);
  VMM_FUZZ_CHECK(std::ranges::equal(out.bytes(), section),
                 "a section of %zu bytes loads and saves as %zu other bytes", section.size(),
                 out.bytes().size());
}

// Restores a fresh legacy device from the front of the rest of the input; if that is accepted,
// the device must save exactly the bytes it read (its state is stored, not derived), and take
// the rest as the guest's port accesses.
template <typename Device>
void restore_then_access(Reader& in, Device& device, uint64_t port_count) {
  const std::span<const uint8_t> bytes = in.bytes(in.remaining());
  StateReader reader(bytes, "device");
  try {
    device.restore_state(reader);
  } catch (const Error&) {
    return;
  }
  const size_t read = bytes.size() - reader.remaining();
  StateWriter out;
  device.save_state(out);
  VMM_FUZZ_CHECK(std::ranges::equal(out.bytes(), bytes.first(read)),
                 "a device state of %zu bytes restores and saves as %zu other bytes", read,
                 out.bytes().size());
  Reader accesses(bytes.data() + read, bytes.size() - read);
  while (!accesses.empty()) perform(device, read_port_access(accesses, port_count));
}

void serial(Reader& in) {
  FakeInterruptLine irq;
  devices::Serial16550 uart(irq);
  restore_then_access(in, uart, devices::Serial16550::kPortCount);
}

void i8042(Reader& in) {
  FakePlatformEvents events;
  FakeInterruptLine irq;
  devices::I8042 controller(events, in.flag() ? &irq : nullptr);
  restore_then_access(in, controller, devices::I8042::kPortCount);
}

void rtc(Reader& in) {
  const auto clock = static_cast<time_t>(in.u32());
  devices::CmosRtc rtc([clock] { return clock; });
  restore_then_access(in, rtc, devices::CmosRtc::kPortCount);
}

void virtio_step(Reader& in, VirtioRig& rig, FuzzRam& ram) {
  uint8_t bytes[8] = {};
  switch (in.u8() % kVirtioOpCount) {
    case kRegisterWrite: {
      const uint16_t offset = in.u16();
      const size_t width = in.u8() % 9;
      const uint64_t value = in.u64();
      std::memcpy(bytes, &value, sizeof(bytes));
      rig.transport().write(offset, std::span<const uint8_t>(bytes, width));
      break;
    }
    case kRegisterRead: {
      const uint16_t offset = in.u16();
      rig.transport().read(offset, std::span<uint8_t>(bytes, in.u8() % 9));
      break;
    }
    case kNotify: {
      const uint64_t one = 1;
      const int fd = rig.transport().notify_fd(static_cast<uint16_t>(in.u8() % rig.queue_count()));
      [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
      break;
    }
    case kRunLoop: devices::testing::run_until_idle(rig.loop()); break;
    case kRamWrite: write_ram_chunk(in, ram); break;
  }
}

// The section restores into a fresh transport (as Machine::restore does: the whole section, or
// the transport is destroyed unused); the restored machine runs; its snapshot, taken as
// Machine::snapshot takes it, restores into another fresh transport over the same RAM.
void virtio(Reader& in) {
  const auto kind = static_cast<VirtioKind>(in.u8() % kVirtioKindCount);
  FuzzRam ram(kRamSize);
  for (uint8_t chunks = in.u8(); chunks > 0; --chunks) write_ram_chunk(in, ram);
  const std::span<const uint8_t> section = in.bytes(in.u32());
  std::vector<uint8_t> saved;
  {
    VirtioRig rig(ram.memory(), kind);
    StateReader reader(section, kVirtioSection);
    try {
      rig.transport().restore_state(reader);
      reader.expect_end();
    } catch (const Error&) {
      return;
    }
    while (!in.empty()) virtio_step(in, rig, ram);
    devices::testing::run_until_idle(rig.loop());
    try {
      rig.transport().quiesce(std::chrono::steady_clock::now() + std::chrono::seconds(1));
      StateWriter out;
      rig.transport().save_state(out);
      saved = out.take();
    } catch (const Error& e) {
      refused_own_output("a snapshot of a restored transport", e);
    }
  }
  VirtioRig again(ram.memory(), kind);
  StateReader reader(saved, kVirtioSection);
  try {
    again.transport().restore_state(reader);
    reader.expect_end();
  } catch (const Error& e) {
    refused_own_output("a restored transport's snapshot", e);
  }
  devices::testing::run_until_idle(again.loop());
}

void run(Reader& in) {
  switch (in.u8() % kParserCount) {
    case kManifest: manifest(in); break;
    case kArchive: archive(in); break;
    case kVcpu: kvm_state<kvm::VcpuState>(in); break;
    case kVm: kvm_state<kvm::VmState>(in); break;
    case kSerial: serial(in); break;
    case kI8042: i8042(in); break;
    case kRtc: rtc(in); break;
    case kVirtio: virtio(in); break;
  }
}

}  // namespace
}  // namespace vmm::fuzz::snapshot

VMM_FUZZ_TARGET(vmm::fuzz::snapshot::run)
