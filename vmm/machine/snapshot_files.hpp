#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/kvm/vcpu_state.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/state_archive.hpp"
#include "base/util/unique_fd.hpp"
#include "vmm/machine/snapshot_manifest.hpp"

namespace vmm {

// Writes a snapshot directory: creates `dir` (or takes an empty one; one that holds a manifest is
// refused, since guests restored from it may still map its memory file), writes the memory file
// (sparse) and the state file, then the manifest, last and atomically (a temporary file renamed),
// each synced: a directory without manifest.json is an unfinished snapshot. `manifest`'s file
// sizes and checksum are filled in here. Errors name the file.
// `write_more` writes the machine's other files (disk overlays) into the folder, before the
// manifest.
void write_snapshot_files(const std::string& dir, const GuestMemory& memory,
                          const std::vector<uint8_t>& state, SnapshotManifest manifest,
                          const std::function<void(const std::string& dir)>& write_more);

// "DIR/NAME".
std::string snapshot_path(const std::string& dir, const std::string& name);
// A new file for writing in a snapshot folder (O_EXCL); errors name it.
UniqueFd create_snapshot_file(const std::string& path);

// A snapshot directory, read and checked: the manifest (this vmm's version and this host's CPU),
// the state file (its size and checksum against the manifest, then its sections).
struct SnapshotFiles {
  SnapshotManifest manifest;
  StateArchive state;
  std::string memory_path;
};
// `option` names the source in errors ("--restore DIR"). Throws vmm::Error, one line.
SnapshotFiles read_snapshot_files(const std::string& dir, const std::string& option);

// The machine a restore runs: the snapshot's, with the restoring process's choices in place of its
// (`restore`'s disks, NICs and vsock, when given, each list as long as the snapshot's; its console,
// sockets, timeout, seccomp, KVM device and debug exit). Nothing is booted: no initrd to build.
// Throws vmm::Error naming the snapshot for a list of the wrong length.
MachineConfig restored_config(const RestoreConfig& restore, const SnapshotManifest& manifest);

// The CPU this process runs on, from the CPUID instruction: what a snapshot must have been made on.
kvm::CpuIdentity host_cpu_identity();

}  // namespace vmm
