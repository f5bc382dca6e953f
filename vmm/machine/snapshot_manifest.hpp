#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/kvm/vcpu_state.hpp"
#include "vmm/machine_config.hpp"

namespace vmm {

// A snapshot directory's manifest.json: what the snapshot is of and what it needs to be restored.
// It is written last, so a directory without one is an unfinished snapshot. The memory and state
// files it names sit next to it.
struct SnapshotManifest {
  // Bumped whenever a state layout changes: a snapshot restores only into the vmm that wrote it.
  static constexpr uint32_t kFormat = 1;
  static constexpr const char* kFileName = "manifest.json";
  static constexpr const char* kMemoryFileName = "memory";
  static constexpr const char* kStateFileName = "state";

  std::string vmm_version;
  kvm::CpuIdentity cpu;
  // What vCPU 0 was given (each vCPU's own table is in its saved state).
  std::vector<kvm_cpuid_entry2> cpuid;
  // The machine as it ran: CPUs, memory, kernel and command line (for the record), disks, NICs,
  // vsock. The console, control socket, timeout and seccomp are the restoring process's choice.
  MachineConfig machine;
  std::vector<uint64_t> disk_sizes;  // bytes, machine.disks' order
  uint64_t memory_file_bytes = 0;
  uint64_t state_file_bytes = 0;
  uint64_t state_checksum = 0;  // fnv1a64 of the state file
  int64_t created_unix_ns = 0;  // CLOCK_REALTIME when the guest was paused
};

std::string manifest_to_json(const SnapshotManifest& manifest);
// `what` names the file in errors. Throws vmm::Error for anything that is not a manifest of this
// format: malformed JSON, a missing or mistyped field, a value out of range. The version and CPU
// are checked by check_restorable().
SnapshotManifest parse_manifest(std::string_view json, const std::string& what);

// Throws vmm::Error (one line, naming `what`) unless a snapshot from `manifest` can be restored
// by this vmm (`vmm_version`) on this CPU (`host`).
void check_restorable(const SnapshotManifest& manifest, std::string_view vmm_version,
                      const kvm::CpuIdentity& host, const std::string& what);

// This build's version, as manifests record it.
const char* vmm_build_version();

}  // namespace vmm
