#pragma once

#include <linux/kvm.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "devices/bus.hpp"
#include "devices/platform_events.hpp"

namespace vmm {

// What a vCPU thread does after KVM_RUN returned with an exit.
struct ExitAction {
  enum class Kind {
    kContinue,      // run the guest again
    kGuestRequest,  // report `request` to the machine; this vCPU runs no more
    kFail,          // report `message`; this vCPU runs no more
  };
  Kind kind = Kind::kContinue;
  devices::GuestRequest request = devices::GuestRequest::kPowerOff;
  std::string message;
  // A kFail for an instruction KVM could not emulate: the thread adds where the guest was (its
  // rip, which only the vCPU fd can tell).
  bool add_rip = false;
  // A triple fault: the thread logs where the vCPU was (describe_triple_fault) at warn level.
  bool triple_fault = false;

  static ExitAction resume() { return {}; }
  static ExitAction guest(devices::GuestRequest request);
  static ExitAction fail(std::string message, bool add_rip = false);
};

// Decodes the exit that the vCPU's kvm_run mapping `run` describes (the whole mmap of the vCPU fd,
// kvm::Kvm::vcpu_mmap_size() bytes, of which struct kvm_run is the start) and carries it out:
// - a port I/O exit goes to `pio`, `io.count` items of `io.size` bytes each (more than one for
//   rep ins/outs), whose data KVM places inside the mapping at `io.data_offset`;
// - an MMIO exit (at most 8 bytes, in `mmio.data`) goes to `mmio`;
// - a triple fault and KVM's system events become guest requests; KVM's errors and any exit vmm
//   does not expect (an unknown reason included) become failures.
// It never reads or writes outside `run`: a mapping smaller than struct kvm_run, or port I/O data
// that would reach past its end (overflow-safe), fails the vCPU instead, as does an access width
// KVM never produces (port I/O of other than 1, 2 or 4 bytes, MMIO of more than 8). A device's
// own guest requests (the debug-exit port, the i8042's reset) reach the machine through the
// device's PlatformEvents, not through the result. `run` must be aligned for struct kvm_run.
ExitAction decode_exit(std::span<uint8_t> run, const devices::Bus& pio, const devices::Bus& mmio);

// The warning for a triple fault on vCPU `id`: a guest that resets this way has usually crashed
// (a bad page table, an exception with no handler), and rip and the control registers say where.
std::string describe_triple_fault(uint32_t id, const kvm_regs& regs, const kvm_sregs& sregs);

// A name for a KVM exit reason, for messages ("hlt", "mmio", ...; "unknown reason" otherwise).
const char* exit_reason_name(uint32_t reason);

// How many exits of each reason a vCPU took, for the metrics: a guest that spins on port I/O or
// MMIO shows here. Its thread counts, any thread reads (relaxed atomics: each count is exact, the
// whole is not one instant).
class VcpuExitCounts {
 public:
  // `reason`: KVM's exit_reason (KVM_EXIT_INTR for a KVM_RUN that a signal or immediate_exit
  // ended); reasons beyond those KVM defines today are counted together as "other".
  void count(uint32_t reason);
  // Each reason counted at least once, by exit_reason_name().
  std::map<std::string, uint64_t> snapshot() const;

 private:
  static constexpr size_t kReasons = 64;                      // KVM defines fewer than 64
  std::array<std::atomic<uint64_t>, kReasons + 1> counts_{};  // the last: "other"
};

}  // namespace vmm
