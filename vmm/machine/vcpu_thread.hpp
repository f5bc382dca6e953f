#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include "base/kvm/vcpu.hpp"
#include "devices/bus.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/pause_gate.hpp"

namespace vmm {

// Runs one vCPU on its own thread: KVM_RUN, then PIO/MMIO exits dispatched synchronously to the
// buses. Anything the vCPU can't continue from is reported to the ExitLatch. Between two KVM_RUNs
// the thread passes the machine's PauseGate, where it parks while the machine is paused.
class VcpuThread {
 public:
  // `seccomp`: the thread confines itself to the vCPU policy (security/seccomp_policy.hpp) before
  // it first enters the guest.
  VcpuThread(kvm::Vcpu& vcpu, const devices::Bus& pio, const devices::Bus& mmio, ExitLatch& latch,
             PauseGate& gate, bool seccomp);
  ~VcpuThread();
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void start();
  // Makes KVM_RUN return and the thread finish; safe from any thread, idempotent.
  void stop();
  void join();
  // Makes KVM_RUN return, so the thread reaches the pause gate; safe from any thread.
  void kick();

  // The signal used to kick vCPU threads out of KVM_RUN; installed once per process.
  static void install_kick_handler();

 private:
  void loop();
  void handle_exit();
  void handle_pio();
  void handle_mmio();

  kvm::Vcpu& vcpu_;
  const devices::Bus& pio_;
  const devices::Bus& mmio_;
  ExitLatch& latch_;
  PauseGate& gate_;
  const bool seccomp_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace vmm
