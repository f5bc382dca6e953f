#include "vmm/machine/vcpu_exit.hpp"

#include <fmt/format.h>
#include <linux/kvm.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstddef>
#include <utility>

namespace vmm {

namespace {

using devices::GuestRequest;

// Port I/O: `io.count` items of `io.size` bytes at `io.data_offset` inside the mapping.
ExitAction port_io(std::span<uint8_t> mapping, const kvm_run& run, const devices::Bus& pio) {
  // A copy: the data may overlap struct kvm_run itself (KVM never puts it there, but nothing else
  // stops it), and an IN must not change the count, size or port of the items still to come.
  const auto io = run.io;
  const bool out = io.direction == KVM_EXIT_IO_OUT;
  if (!out && io.direction != KVM_EXIT_IO_IN) {
    return ExitAction::fail(fmt::format("port I/O exit with direction {}", io.direction));
  }
  if (io.size != 1 && io.size != 2 && io.size != 4) {
    return ExitAction::fail(
        fmt::format("port I/O exit at port {:#x} of {} bytes", io.port, io.size));
  }
  // count < 2^32 and size <= 4: the product can't overflow; the offset is compared on its own
  // first, so the sum can't either.
  const uint64_t bytes = static_cast<uint64_t>(io.count) * io.size;
  if (io.data_offset > mapping.size() || bytes > mapping.size() - io.data_offset) {
    return ExitAction::fail(
        fmt::format("port I/O exit at port {:#x}: {} item(s) of {} bytes at offset {:#x} lie "
                    "outside the {}-byte "
                    "kvm_run mapping",
                    io.port, io.count, io.size, io.data_offset, mapping.size()));
  }
  const std::span<uint8_t> data = mapping.subspan(io.data_offset, bytes);
  for (size_t offset = 0; offset < bytes; offset += io.size) {
    const std::span<uint8_t> item = data.subspan(offset, io.size);
    const bool handled = out ? pio.write(io.port, item) : pio.read(io.port, item);
    if (!handled) {
      SPDLOG_TRACE("unhandled port {} {:#x} size {}", out ? "out" : "in", io.port, io.size);
    }
  }
  return ExitAction::resume();
}

// MMIO: up to 8 bytes in `mmio.data`, which a read fills in.
ExitAction mmio_access(kvm_run& run, const devices::Bus& mmio) {
  auto& access = run.mmio;
  if (access.len > sizeof(access.data)) {
    return ExitAction::fail(fmt::format("MMIO exit at {:#x} of {} bytes (at most {})",
                                        access.phys_addr, access.len, sizeof(access.data)));
  }
  if (access.len == 0) return ExitAction::resume();  // nothing to access
  const std::span<uint8_t> data(access.data, access.len);
  const bool handled =
      access.is_write ? mmio.write(access.phys_addr, data) : mmio.read(access.phys_addr, data);
  if (!handled) {
    spdlog::debug("unhandled MMIO {} at {:#x} size {}", access.is_write ? "write" : "read",
                  access.phys_addr, access.len);
  }
  return ExitAction::resume();
}

ExitAction system_event(const kvm_run& run) {
  switch (run.system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN: return ExitAction::guest(GuestRequest::kPowerOff);
    case KVM_SYSTEM_EVENT_RESET: return ExitAction::guest(GuestRequest::kReboot);
    case KVM_SYSTEM_EVENT_CRASH: return ExitAction::guest(GuestRequest::kPanic);
    default:
      return ExitAction::fail(fmt::format("unexpected KVM system event {}", run.system_event.type));
  }
}

}  // namespace

ExitAction ExitAction::guest(devices::GuestRequest request) {
  ExitAction action;
  action.kind = Kind::kGuestRequest;
  action.request = request;
  return action;
}

ExitAction ExitAction::fail(std::string message, bool add_rip) {
  ExitAction action;
  action.kind = Kind::kFail;
  action.message = std::move(message);
  action.add_rip = add_rip;
  return action;
}

const char* exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "unknown";
    case KVM_EXIT_EXCEPTION: return "exception";
    case KVM_EXIT_IO: return "io";
    case KVM_EXIT_HYPERCALL: return "hypercall";
    case KVM_EXIT_DEBUG: return "debug";
    case KVM_EXIT_HLT: return "hlt";
    case KVM_EXIT_MMIO: return "mmio";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "irq window open";
    case KVM_EXIT_SHUTDOWN: return "shutdown";
    case KVM_EXIT_FAIL_ENTRY: return "fail entry";
    case KVM_EXIT_INTR: return "intr";
    case KVM_EXIT_NMI: return "nmi";
    case KVM_EXIT_INTERNAL_ERROR: return "internal error";
    case KVM_EXIT_SYSTEM_EVENT: return "system event";
    case KVM_EXIT_X86_RDMSR: return "rdmsr";
    case KVM_EXIT_X86_WRMSR: return "wrmsr";
    default: return "unknown reason";
  }
}

void VcpuExitCounts::count(uint32_t reason) {
  counts_[std::min<size_t>(reason, kReasons)].fetch_add(1, std::memory_order_relaxed);
}

std::map<std::string, uint64_t> VcpuExitCounts::snapshot() const {
  std::map<std::string, uint64_t> counts;
  for (size_t reason = 0; reason <= kReasons; ++reason) {
    const uint64_t count = counts_[reason].load(std::memory_order_relaxed);
    if (count == 0) continue;
    // Reasons without a name of their own share "unknown reason".
    counts[reason == kReasons ? "other" : exit_reason_name(static_cast<uint32_t>(reason))] += count;
  }
  return counts;
}

std::string describe_triple_fault(uint32_t id, const kvm_regs& regs, const kvm_sregs& sregs) {
  // AMD's KVM reinitialises the vCPU at a shutdown (the VMCB is undefined after one), so there the
  // registers read back are the reset state's, not the fault's: say so rather than mislead.
  constexpr uint64_t kResetRip = 0xfff0;
  constexpr uint64_t kCr0ProtectionEnable = 1;
  const bool reset_state = regs.rip == kResetRip && (sregs.cr0 & kCr0ProtectionEnable) == 0;
  return fmt::format(
      "vCPU {}: triple fault (the guest is reset) at rip {:#x}, cr0 {:#x}, cr3 {:#x}, cr4 {:#x}{}",
      id, regs.rip, sregs.cr0, sregs.cr3, sregs.cr4,
      reset_state ? " (the reset state: this host's KVM reset the vCPU, where it faulted is lost)"
                  : "");
}

ExitAction decode_exit(std::span<uint8_t> mapping, const devices::Bus& pio,
                       const devices::Bus& mmio) {
  if (mapping.size() < sizeof(kvm_run)) {
    return ExitAction::fail(
        fmt::format("the kvm_run mapping has {} bytes, fewer than the {} of "
                    "struct kvm_run",
                    mapping.size(), sizeof(kvm_run)));
  }
  // The mapping is the vCPU's kvm_run page (and what follows it), placed there by KVM.
  auto& run = *reinterpret_cast<kvm_run*>(mapping.data());
  switch (run.exit_reason) {
    case KVM_EXIT_IO: return port_io(mapping, run, pio);
    case KVM_EXIT_MMIO: return mmio_access(run, mmio);
    case KVM_EXIT_INTR: return ExitAction::resume();  // a signal, not necessarily ours
    case KVM_EXIT_SHUTDOWN: {
      // A triple fault: a reset on a PC (status 3), and Linux's last-resort reboot method; but
      // as often a guest that crashed, so the thread logs where it was.
      ExitAction action = ExitAction::guest(GuestRequest::kReboot);
      action.triple_fault = true;
      return action;
    }
    case KVM_EXIT_SYSTEM_EVENT: return system_event(run);
    case KVM_EXIT_INTERNAL_ERROR:
      if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        return ExitAction::fail(
            fmt::format("KVM internal error, suberror {}: instruction emulation failed",
                        run.internal.suberror),
            true);
      }
      return ExitAction::fail(
          fmt::format("KVM internal error, suberror {}", run.internal.suberror));
    case KVM_EXIT_FAIL_ENTRY:
      return ExitAction::fail(fmt::format("KVM could not enter the guest (hardware reason {:#x})",
                                          run.fail_entry.hardware_entry_failure_reason));
    default:
      return ExitAction::fail(fmt::format("unexpected KVM exit {} ({})", run.exit_reason,
                                          exit_reason_name(run.exit_reason)));
  }
}

}  // namespace vmm
