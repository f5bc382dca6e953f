#include "vmm/machine/vcpu_thread.hpp"

#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "vmm/security/seccomp_filter.hpp"

namespace vmm {

namespace {

int kick_signal() {
  return SIGRTMIN;
}

const char* exit_reason_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_UNKNOWN: return "unknown";
    case KVM_EXIT_EXCEPTION: return "exception";
    case KVM_EXIT_HLT: return "hlt";
    case KVM_EXIT_DEBUG: return "debug";
    case KVM_EXIT_IRQ_WINDOW_OPEN: return "irq window open";
    case KVM_EXIT_NMI: return "nmi";
    default: return "unexpected";
  }
}

}  // namespace

void VcpuThread::install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction action {};
    // An empty handler without SA_RESTART: its only purpose is to make KVM_RUN return EINTR.
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    ::sigaction(kick_signal(), &action, nullptr);
  });
}

VcpuThread::VcpuThread(kvm::Vcpu& vcpu, const devices::Bus& pio, const devices::Bus& mmio,
                       ExitLatch& latch, PauseGate& gate, bool seccomp)
    : vcpu_(vcpu), pio_(pio), mmio_(mmio), latch_(latch), gate_(gate), seccomp_(seccomp) {}

VcpuThread::~VcpuThread() {
  stop();
  join();
}

void VcpuThread::start() {
  install_kick_handler();
  thread_ = std::thread([this] {
    const std::string name = fmt::format("vcpu{}", vcpu_.id());
    ::pthread_setname_np(::pthread_self(), name.c_str());
    // A console sink whose reader went away (a closed pipe given as SerialConfig::kFd) fails
    // with EPIPE instead of killing the process.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    if (seccomp_) {
      try {
        security::confine_thread(security::ThreadKind::kVcpu);
      } catch (const std::exception& e) {
        latch_.fail(fmt::format("vCPU {}: {}", vcpu_.id(), e.what()));
        return;
      }
    }
    loop();
  });
}

void VcpuThread::stop() {
  stopping_.store(true);
  // immediate_exit covers a kick that lands just before KVM_RUN is entered.
  vcpu_.run_state()->immediate_exit = 1;
  if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
}

void VcpuThread::kick() {
  vcpu_.run_state()->immediate_exit = 1;
  if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
}

void VcpuThread::join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuThread::loop() {
  try {
    while (true) {
      if (gate_.pause_requested()) {
        if (!gate_.checkpoint()) return;  // the machine is stopping
        // The kick that brought us here left immediate_exit set. The fence orders this store
        // before the loads of stopping_ and the gate: a stop() or pause() we don't see yet sets
        // it again after this store.
        vcpu_.run_state()->immediate_exit = 0;
        std::atomic_thread_fence(std::memory_order_seq_cst);
        continue;
      }
      if (stopping_.load()) return;
      if (vcpu_.run() < 0) continue;  // kicked
      handle_exit();
    }
  } catch (const std::exception& e) {
    latch_.fail(fmt::format("vCPU {}: {}", vcpu_.id(), e.what()));
  }
}

void VcpuThread::handle_exit() {
  kvm_run* run = vcpu_.run_state();
  switch (run->exit_reason) {
    case KVM_EXIT_IO: handle_pio(); return;
    case KVM_EXIT_MMIO: handle_mmio(); return;
    case KVM_EXIT_SHUTDOWN:
      // A triple fault: what a PC does on reset, and Linux's last-resort reboot method.
      spdlog::debug("vCPU {}: shutdown (triple fault)", vcpu_.id());
      latch_.guest_request(devices::GuestRequest::kReboot, 0);
      stopping_.store(true);
      return;
    case KVM_EXIT_SYSTEM_EVENT:
      if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
        latch_.guest_request(devices::GuestRequest::kPowerOff, 0);
      } else if (run->system_event.type == KVM_SYSTEM_EVENT_CRASH) {
        latch_.guest_request(devices::GuestRequest::kPanic, 0);
      } else {
        latch_.guest_request(devices::GuestRequest::kReboot, 0);
      }
      stopping_.store(true);
      return;
    case KVM_EXIT_INTERNAL_ERROR: {
      std::string detail;
      if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
        detail = " (instruction emulation failed";
        const auto regs = vcpu_.regs();
        detail += fmt::format(" at rip {:#x})", regs.rip);
      }
      latch_.fail(fmt::format("vCPU {}: KVM internal error, suberror {}{}", vcpu_.id(),
                              run->internal.suberror, detail));
      stopping_.store(true);
      return;
    }
    case KVM_EXIT_FAIL_ENTRY:
      latch_.fail(fmt::format("vCPU {}: KVM could not enter the guest (hardware reason {:#x})",
                              vcpu_.id(), run->fail_entry.hardware_entry_failure_reason));
      stopping_.store(true);
      return;
    case KVM_EXIT_INTR: return;
    default:
      latch_.fail(fmt::format("vCPU {}: unexpected KVM exit {} ({})", vcpu_.id(), run->exit_reason,
                              exit_reason_name(run->exit_reason)));
      stopping_.store(true);
      return;
  }
}

void VcpuThread::handle_pio() {
  kvm_run* run = vcpu_.run_state();
  const auto& io = run->io;
  auto* base = reinterpret_cast<uint8_t*>(run);
  // KVM places the data inside the shared kvm_run page; `count` > 1 for rep ins/outs.
  for (uint32_t i = 0; i < io.count; ++i) {
    std::span<uint8_t> data(base + io.data_offset + static_cast<size_t>(i) * io.size, io.size);
    bool handled;
    if (io.direction == KVM_EXIT_IO_OUT) {
      handled = pio_.write(io.port, data);
    } else {
      handled = pio_.read(io.port, data);
    }
    if (!handled) {
      SPDLOG_TRACE("unhandled port {} {:#x} size {}",
                   io.direction == KVM_EXIT_IO_OUT ? "out" : "in", io.port, io.size);
    }
  }
}

void VcpuThread::handle_mmio() {
  kvm_run* run = vcpu_.run_state();
  auto& mmio = run->mmio;
  const size_t len = std::min<size_t>(mmio.len, sizeof(mmio.data));
  std::span<uint8_t> data(mmio.data, len);
  bool handled;
  if (mmio.is_write) {
    handled = mmio_.write(mmio.phys_addr, data);
  } else {
    handled = mmio_.read(mmio.phys_addr, data);
  }
  if (!handled) {
    spdlog::debug("unhandled MMIO {} at {:#x} size {}", mmio.is_write ? "write" : "read",
                  mmio.phys_addr, mmio.len);
  }
}

}  // namespace vmm
