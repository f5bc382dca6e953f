#pragma once

namespace vmm {

// What a restore takes from the restoring process, never from the snapshot: its console, control
// socket, timeout, seccomp, KVM device and debug-exit port. One list for both directions (a
// MachineConfig's options into a RestoreConfig, and those into the restored MachineConfig), so a
// new host-side setting can't be carried one way and forgotten the other.
template <typename From, typename To>
void copy_restore_choices(const From& from, To& to) {
  to.serial = from.serial;
  to.api_socket = from.api_socket;
  to.timeout_seconds = from.timeout_seconds;
  to.seccomp = from.seccomp;
  to.kvm_device = from.kvm_device;
  to.debug_exit = from.debug_exit;
}

}  // namespace vmm
