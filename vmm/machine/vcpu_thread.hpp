#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>

#include "base/kvm/vcpu.hpp"
#include "base/util/thread_annotations.hpp"
#include "devices/bus.hpp"
#include "vmm/machine/exit_latch.hpp"
#include "vmm/machine/pause_gate.hpp"
#include "vmm/machine/vcpu_exit.hpp"

namespace vmm {

// What a VcpuThread needs of its vCPU: a kvm::Vcpu in a machine, a fake in the tests.
class VcpuHandle {
 public:
  virtual ~VcpuHandle() = default;
  virtual uint32_t id() const = 0;
  // The vCPU's whole kvm_run mapping (struct kvm_run first, port I/O data after it); it stays in
  // place while the thread runs.
  virtual std::span<uint8_t> run_mapping() const = 0;
  // KVM_RUN once, with KVM's contract: 0 after an exit described in the mapping; -EINTR (or
  // -EAGAIN) at once when `immediate_exit` is set or a signal is pending, or when a signal arrives
  // while the guest runs; throws on any other failure.
  virtual int run() = 0;
  // Where the guest is, for an error message or a triple fault's warning.
  virtual kvm_regs regs() const = 0;
  virtual kvm_sregs sregs() const = 0;
};

// Runs one vCPU on its own thread: KVM_RUN, then each exit decoded by decode_exit
// (vcpu_exit.hpp), which dispatches PIO/MMIO synchronously to the buses. Anything the vCPU can't
// continue from is reported to the ExitLatch. Between two KVM_RUNs the thread passes the
// machine's PauseGate, where it parks while the machine is paused.
//
// Once the latch is set (by this vCPU's exit, a device it wrote to, another vCPU, the timeout or
// a stop), the thread enters the guest no more: a guest's debug-exit write is its last
// instruction, whatever follows it (a reset pulse, hlt).
class VcpuThread {
 public:
  // `run_size`: the size of the vCPU's kvm_run mapping, kvm::Kvm::vcpu_mmap_size(). `seccomp`:
  // the thread confines itself to the vCPU policy (security/seccomp_policy.hpp) before it first
  // enters the guest. `exits`: where the thread counts its exits (the machine's, so that they
  // outlive the thread and are there before it starts); it must outlive the thread.
  VcpuThread(kvm::Vcpu& vcpu, size_t run_size, const devices::Bus& pio, const devices::Bus& mmio,
             ExitLatch& latch, PauseGate& gate, VcpuExitCounts& exits, bool seccomp);
  // For the tests: a vCPU of their own; it must outlive the thread.
  VcpuThread(VcpuHandle& vcpu, const devices::Bus& pio, const devices::Bus& mmio, ExitLatch& latch,
             PauseGate& gate, VcpuExitCounts& exits, bool seccomp);
  ~VcpuThread();
  VcpuThread(const VcpuThread&) = delete;
  VcpuThread& operator=(const VcpuThread&) = delete;

  void start();
  // Makes KVM_RUN return and the thread finish; safe from any thread, idempotent.
  void stop();
  // Once, from one thread; stop() and kick() may run on others meanwhile.
  void join();
  // Makes KVM_RUN return, so the thread reaches the pause gate; safe from any thread, also while
  // another joins it.
  void kick();

  // The signal used to kick vCPU threads out of KVM_RUN (SIGRTMIN); its handler is installed once
  // per process. Each vCPU thread unblocks it for itself, whatever mask it inherited.
  static int kick_signal();
  static void install_kick_handler();

 private:
  // The vCPU is `owned`, or else `borrowed`.
  VcpuThread(std::unique_ptr<VcpuHandle> owned, VcpuHandle* borrowed, const devices::Bus& pio,
             const devices::Bus& mmio, ExitLatch& latch, PauseGate& gate, VcpuExitCounts& exits,
             bool seccomp);
  void run_thread();
  void loop();
  // Carries out the exit KVM_RUN returned with; false if this vCPU must run no more.
  bool handle_exit();
  // Before parking: completes the exit last handled, so the registers hold no half-done
  // instruction; false if this vCPU must run no more.
  bool settle();
  void log_triple_fault() const;
  // Sets or clears kvm_run's immediate_exit (shared with KVM and with the threads that kick).
  void set_immediate_exit(bool value);
  // Sends the kick signal, unless the thread has finished (or never started).
  void signal_thread();

  std::unique_ptr<VcpuHandle> owned_;  // the kvm::Vcpu adapter, for a machine's vCPU
  VcpuHandle& vcpu_;
  const devices::Bus& pio_;
  const devices::Bus& mmio_;
  ExitLatch& latch_;
  PauseGate& gate_;
  VcpuExitCounts& exits_;
  const bool seccomp_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  // Guards the two below: the thread's handle may be signalled from start() until the thread's
  // last step, and not after, when join() may free it.
  Mutex signal_mutex_;
  pthread_t handle_ VMM_GUARDED_BY(signal_mutex_){};
  bool signalable_ VMM_GUARDED_BY(signal_mutex_) = false;
};

}  // namespace vmm
