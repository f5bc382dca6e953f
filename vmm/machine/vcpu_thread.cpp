#include "vmm/machine/vcpu_thread.hpp"

#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>
#include <utility>

#include "vmm/machine/vcpu_exit.hpp"
#include "vmm/security/seccomp_filter.hpp"

namespace vmm {

namespace {

// A machine's vCPU: the KVM vCPU fd and its mapping.
class KvmVcpu final : public VcpuHandle {
 public:
  KvmVcpu(kvm::Vcpu& vcpu, size_t run_size) : vcpu_(vcpu), run_size_(run_size) {}

  uint32_t id() const override { return vcpu_.id(); }
  std::span<uint8_t> run_mapping() const override {
    return {reinterpret_cast<uint8_t*>(vcpu_.run_state()), run_size_};
  }
  int run() override { return vcpu_.run(); }
  kvm_regs regs() const override { return vcpu_.regs(); }
  kvm_sregs sregs() const override { return vcpu_.sregs(); }

 private:
  kvm::Vcpu& vcpu_;
  size_t run_size_;
};

}  // namespace

int VcpuThread::kick_signal() {
  return SIGRTMIN;
}

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

VcpuThread::VcpuThread(kvm::Vcpu& vcpu, size_t run_size, const devices::Bus& pio,
                       const devices::Bus& mmio, ExitLatch& latch, PauseGate& gate,
                       VcpuExitCounts& exits, bool seccomp)
    : VcpuThread(std::make_unique<KvmVcpu>(vcpu, run_size), nullptr, pio, mmio, latch, gate, exits,
                 seccomp) {}

VcpuThread::VcpuThread(VcpuHandle& vcpu, const devices::Bus& pio, const devices::Bus& mmio,
                       ExitLatch& latch, PauseGate& gate, VcpuExitCounts& exits, bool seccomp)
    : VcpuThread(nullptr, &vcpu, pio, mmio, latch, gate, exits, seccomp) {}

VcpuThread::VcpuThread(std::unique_ptr<VcpuHandle> owned, VcpuHandle* borrowed,
                       const devices::Bus& pio, const devices::Bus& mmio, ExitLatch& latch,
                       PauseGate& gate, VcpuExitCounts& exits, bool seccomp)
    : owned_(std::move(owned)),
      vcpu_(owned_ ? *owned_ : *borrowed),
      pio_(pio),
      mmio_(mmio),
      latch_(latch),
      gate_(gate),
      exits_(exits),
      seccomp_(seccomp) {}

VcpuThread::~VcpuThread() {
  stop();
  join();
}

void VcpuThread::start() {
  install_kick_handler();
  // Held until the handle is recorded, so the thread's own "no more signals" comes after it.
  MutexLock lock(signal_mutex_);
  thread_ = std::thread([this] {
    const std::string name = fmt::format("vcpu{}", vcpu_.id());
    ::pthread_setname_np(::pthread_self(), name.c_str());
    // A console sink whose reader went away (a closed pipe given as SerialConfig::kFd) fails
    // with EPIPE instead of killing the process. The kick must get through whatever mask the
    // thread that started the machine had (a library user may block every signal in its
    // threads): blocked, it would leave a halted vCPU in KVM_RUN for good, and stop() waiting.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &mask, nullptr);
    sigemptyset(&mask);
    sigaddset(&mask, kick_signal());
    ::pthread_sigmask(SIG_UNBLOCK, &mask, nullptr);
    run_thread();
    // From here on the thread may be joined at any moment: nobody may signal it any more.
    MutexLock done(signal_mutex_);
    signalable_ = false;
  });
  handle_ = thread_.native_handle();
  signalable_ = true;
}

void VcpuThread::run_thread() {
  if (seccomp_) {
    try {
      security::confine_thread(security::ThreadKind::kVcpu);
    } catch (const std::exception& e) {
      latch_.fail(fmt::format("vCPU {}: {}", vcpu_.id(), e.what()));
      return;
    }
  }
  loop();
}

void VcpuThread::signal_thread() {
  // Not through thread_, which join() may be changing on another thread (a pause racing with the
  // loop thread's stop-and-join): the handle recorded at start, while the thread can't be joined.
  MutexLock lock(signal_mutex_);
  if (signalable_) ::pthread_kill(handle_, kick_signal());
}

void VcpuThread::set_immediate_exit(bool value) {
  auto* run = reinterpret_cast<kvm_run*>(vcpu_.run_mapping().data());
  std::atomic_ref<uint8_t>(run->immediate_exit).store(value ? 1 : 0);
}

void VcpuThread::stop() {
  stopping_.store(true);
  // immediate_exit covers a kick that lands just before KVM_RUN is entered (the signal is then
  // handled in user space and lost).
  set_immediate_exit(true);
  signal_thread();
}

void VcpuThread::kick() {
  set_immediate_exit(true);
  signal_thread();
}

void VcpuThread::join() {
  if (thread_.joinable()) thread_.join();
}

void VcpuThread::loop() {
  try {
    while (true) {
      if (gate_.pause_requested()) {
        if (!settle()) return;
        if (!gate_.checkpoint()) return;  // the machine is stopping
        // The kick that brought us here left immediate_exit set. Both are seq_cst, so this store
        // is ordered before the loads of stopping_, the latch and the gate below: a stop() or
        // pause() we don't see yet sets it again after this store.
        set_immediate_exit(false);
        continue;
      }
      // The latch is set before anyone is told to stop us: once the machine stops, for whatever
      // reason, the guest runs no further instruction on this vCPU.
      if (stopping_.load() || latch_.is_set()) return;
      if (vcpu_.run() < 0) {  // kicked
        exits_.count(KVM_EXIT_INTR);
        continue;
      }
      if (!handle_exit()) {
        stopping_.store(true);
        return;
      }
    }
  } catch (const std::exception& e) {
    latch_.fail(fmt::format("vCPU {}: {}", vcpu_.id(), e.what()));
  }
}

// KVM finishes the instruction behind a port-I/O or MMIO exit (an IN's result into RAX, a string
// op's next element) only at the next KVM_RUN: until then the registers are mid-instruction
// ("Documentation/virt/kvm/api.rst": KVM_RUN with immediate_exit completes it and returns EINTR
// before entering the guest). A parked vCPU's state must be whole, since a snapshot saves it.
bool VcpuThread::settle() {
  set_immediate_exit(true);
  while (vcpu_.run() == 0) {
    // A fragment of a split MMIO access exits again.
    if (!handle_exit()) {
      stopping_.store(true);
      return false;
    }
  }
  return true;
}

void VcpuThread::log_triple_fault() const {
  try {
    spdlog::warn("{}", describe_triple_fault(vcpu_.id(), vcpu_.regs(), vcpu_.sregs()));
  } catch (const std::exception& e) {
    spdlog::warn("vCPU {}: triple fault (the guest is reset); its registers: {}", vcpu_.id(),
                 e.what());
  }
}

bool VcpuThread::handle_exit() {
  const std::span<uint8_t> mapping = vcpu_.run_mapping();
  // decode_exit fails a mapping too small for struct kvm_run.
  if (mapping.size() >= sizeof(kvm_run)) {
    exits_.count(reinterpret_cast<const kvm_run*>(mapping.data())->exit_reason);
  }
  ExitAction action = decode_exit(mapping, pio_, mmio_);
  switch (action.kind) {
    case ExitAction::Kind::kContinue: return true;
    case ExitAction::Kind::kGuestRequest:
      if (action.triple_fault) log_triple_fault();
      spdlog::debug("vCPU {}: the guest asks to stop", vcpu_.id());
      latch_.guest_request(action.request, 0);
      return false;
    case ExitAction::Kind::kFail: {
      std::string where;
      if (action.add_rip) {
        try {
          where = fmt::format(" at rip {:#x}", vcpu_.regs().rip);
        } catch (const std::exception& e) {
          where = fmt::format(" (rip unknown: {})", e.what());
        }
      }
      latch_.fail(fmt::format("vCPU {}: {}{}", vcpu_.id(), action.message, where));
      return false;
    }
  }
  return false;
}

}  // namespace vmm
