// The vCPU's exit decoding (vmm/machine/vcpu_exit.cpp): whatever the kvm_run mapping holds (any
// exit reason, port I/O with any direction, width, count, including rep ins/outs, and data offset,
// MMIO of any length, system events, errors) and whatever its size, decode_exit must never read or
// write outside the mapping, and must carry out exactly the accesses that fit. The mapping is a
// heap buffer of exactly its size, so AddressSanitizer sees any byte past it; the devices on the
// buses also check that every span they are handed lies inside it, and touch each of its bytes.
//
// Input: u16 mapping size (taken modulo 4 pages + 1: below sizeof(kvm_run) too), u8 layout (bit 0:
// one checking device over the whole port space, else the real debug-exit and i8042 devices
// and a checking device at COM1's ports; bit 1: one checking device over the whole MMIO space,
// else one 4 KiB window), then the mapping's bytes from its start (struct kvm_run first: the exit
// reason at offset 8, the exit's union at 32; KVM's port data page at 4096); the rest is zero.

#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "devices/bus.hpp"
#include "devices/legacy/debug_exit.hpp"
#include "devices/legacy/i8042.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "vmm/machine/vcpu_exit.hpp"

namespace vmm::fuzz {
namespace {

constexpr size_t kPage = 4096;
constexpr uint16_t kCom1 = 0x3f8;
constexpr uint64_t kMmioWindow = 0xd0000000;

// A device that checks every span it is handed against the mapping, and reads or writes each byte.
class CheckingDevice final : public devices::BusDevice {
 public:
  explicit CheckingDevice(std::span<const uint8_t> mapping) : mapping_(mapping) {}

  void read(uint64_t offset, std::span<uint8_t> data) override {
    check(data);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
  }
  void write(uint64_t, std::span<const uint8_t> data) override {
    check(data);
    for (const uint8_t byte : data) sum_ += byte;
  }
  uint64_t accesses() const { return accesses_; }

 private:
  void check(std::span<const uint8_t> data) {
    ++accesses_;
    VMM_FUZZ_CHECK(data.size() <= 8, "an access of %zu bytes", data.size());
    const auto* begin = mapping_.data();
    const auto* end = begin + mapping_.size();
    const bool in_kvm_run = data.data() >= begin && data.data() + data.size() <= end;
    VMM_FUZZ_CHECK(in_kvm_run, "a %zu-byte access at mapping offset %td, outside its %zu bytes",
                   data.size(), data.data() - begin, mapping_.size());
  }

  std::span<const uint8_t> mapping_;
  uint64_t accesses_ = 0;
  uint64_t sum_ = 0;
};

// What decode_exit must do with a port I/O exit, worked out on its own.
bool port_io_fits(const kvm_run& run, size_t mapping_size) {
  const auto& io = run.io;
  if (io.direction != KVM_EXIT_IO_IN && io.direction != KVM_EXIT_IO_OUT) return false;
  if (io.size != 1 && io.size != 2 && io.size != 4) return false;
  const unsigned __int128 end =
      static_cast<unsigned __int128>(io.data_offset) + static_cast<uint64_t>(io.count) * io.size;
  return io.data_offset <= mapping_size && end <= mapping_size;
}

void run(Reader& in) {
  const size_t size = in.u16() % (4 * kPage + 1);
  const uint8_t layout = in.u8();
  // Exactly `size` bytes, so ASan reports the first byte past the end (operator new's alignment
  // covers struct kvm_run's).
  std::vector<uint8_t> mapping(size);
  const auto bytes = in.bytes(size);
  if (!bytes.empty()) std::memcpy(mapping.data(), bytes.data(), bytes.size());

  FakePlatformEvents events;
  auto port_checker = std::make_shared<CheckingDevice>(mapping);
  auto mmio_checker = std::make_shared<CheckingDevice>(mapping);
  const bool all_ports = (layout & 1) != 0;
  const bool all_mmio = (layout & 2) != 0;
  devices::Bus pio("pio");
  devices::Bus mmio("mmio");
  if (all_ports) {
    pio.insert(0, 0x10000, port_checker);
  } else {
    pio.insert(devices::DebugExit::kPortBase, devices::DebugExit::kPortCount,
               std::make_shared<devices::DebugExit>(events));
    pio.insert(devices::I8042::kPortBase, devices::I8042::kPortCount,
               std::make_shared<devices::I8042>(events, nullptr));
    pio.insert(kCom1, 8, port_checker);
  }
  if (all_mmio) {
    mmio.insert(0, UINT64_MAX, mmio_checker);
  } else {
    mmio.insert(kMmioWindow, kPage, mmio_checker);
  }

  // The exit as it was: an IN may write its data over struct kvm_run itself.
  kvm_run run{};
  if (size >= sizeof(kvm_run)) std::memcpy(&run, mapping.data(), sizeof(run));
  const ExitAction action = decode_exit(mapping, pio, mmio);
  if (action.kind == ExitAction::Kind::kFail) {
    VMM_FUZZ_CHECK(!action.message.empty(), "a failure without a message");
  }
  if (size < sizeof(kvm_run)) {
    VMM_FUZZ_CHECK(action.kind == ExitAction::Kind::kFail, "a %zu-byte mapping was decoded", size);
    VMM_FUZZ_CHECK(port_checker->accesses() + mmio_checker->accesses() + events.requests == 0,
                   "a %zu-byte mapping reached a device", size);
    return;
  }
  if (run.exit_reason == KVM_EXIT_IO) {
    const bool fits = port_io_fits(run, size);
    VMM_FUZZ_CHECK(fits == (action.kind == ExitAction::Kind::kContinue),
                   "port I/O: fits %d, decoded as %d (size %u count %u offset %llu, mapping %zu)",
                   fits, static_cast<int>(action.kind), run.io.size, run.io.count,
                   static_cast<unsigned long long>(run.io.data_offset), size);
    VMM_FUZZ_CHECK(fits || port_checker->accesses() + events.requests == 0,
                   "port I/O that does not fit reached a device");
    // Every item of a port I/O the whole-space device covers reaches it, in turn.
    if (fits && all_ports && run.io.port + run.io.size <= 0x10000) {
      VMM_FUZZ_CHECK(port_checker->accesses() == run.io.count, "%llu accesses for %u items",
                     static_cast<unsigned long long>(port_checker->accesses()), run.io.count);
    }
  } else if (run.exit_reason == KVM_EXIT_MMIO) {
    const bool fits = run.mmio.len <= 8;
    VMM_FUZZ_CHECK(fits == (action.kind == ExitAction::Kind::kContinue),
                   "MMIO of %u bytes decoded as %d", run.mmio.len, static_cast<int>(action.kind));
    VMM_FUZZ_CHECK(mmio_checker->accesses() <= (fits && run.mmio.len > 0 ? 1u : 0u),
                   "MMIO of %u bytes made %llu accesses", run.mmio.len,
                   static_cast<unsigned long long>(mmio_checker->accesses()));
  } else {
    VMM_FUZZ_CHECK(port_checker->accesses() + mmio_checker->accesses() == 0,
                   "exit %u reached a device", run.exit_reason);
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
