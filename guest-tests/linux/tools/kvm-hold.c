// kvm-hold: holds one idle KVM VM open in the nested lab's L1 for as long as it runs (L1's /init
// starts it before any test), so that the VMs the tests create and destroy never take KVM's static
// keys from 0 to 1 and back.
//
// Why: each such flip patches L1's kernel text with INT3s (text_poke_bp) while both its CPUs run,
// and under QEMU's multi-threaded TCG that cross-modifying code now and then leaves both L1 CPUs
// looping for good in the INT3 handler (seen: every vCPU at asm_exc_int3, exc_int3 or __schedule
// with interrupts off, after a few hundred VM create/destroy cycles; L1 goes silent). The keys are
// the LAPIC's: one counts software-disabled APICs (every new vCPU's), one hardware-disabled APICs.
// So the VM has the in-kernel irqchip, as vmm's have, and two vCPUs that never run: one as created,
// one with its APIC base MSR's enable bit cleared. Holding a VM also keeps virtualization enabled
// on every CPU, which KVM otherwise switches on and off with IPIs as the count of VMs leaves and
// returns to 0.
//
// Usage: kvm-hold (runs until killed). Exit status 1, said on stderr, if it can't set that up.
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

enum { kApicBaseMsr = 0x1b };
static const unsigned long long kApicBaseDisabled =
    0xfee00000ULL;  // the default base, enable bit clear

static int fail(const char* what) {
  perror(what);
  return 1;
}

int main(void) {
  const int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) return fail("kvm-hold: /dev/kvm");
  const int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
  if (vm < 0) return fail("kvm-hold: KVM_CREATE_VM");
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0UL) < 0) return fail("kvm-hold: KVM_CREATE_IRQCHIP");
  if (ioctl(vm, KVM_CREATE_VCPU, 0UL) < 0) return fail("kvm-hold: KVM_CREATE_VCPU 0");
  const int hw_disabled = ioctl(vm, KVM_CREATE_VCPU, 1UL);
  if (hw_disabled < 0) return fail("kvm-hold: KVM_CREATE_VCPU 1");
  struct {
    struct kvm_msrs header;
    struct kvm_msr_entry entry;
  } msrs = {.header = {.nmsrs = 1}, .entry = {.index = kApicBaseMsr, .data = kApicBaseDisabled}};
  if (ioctl(hw_disabled, KVM_SET_MSRS, &msrs) != 1)
    return fail("kvm-hold: KVM_SET_MSRS (APIC base)");
  for (;;) pause();
}
