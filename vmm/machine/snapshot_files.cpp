#include "vmm/machine/snapshot_files.hpp"

#include <cpuid.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "base/util/unique_fd.hpp"
#include "vmm/machine/restore_choices.hpp"

namespace vmm {

namespace {

constexpr uint64_t kMaxManifestBytes = uint64_t{1} << 20;
constexpr uint64_t kMaxStateBytes = uint64_t{256} << 20;

void write_all(int fd, const std::vector<uint8_t>& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno(path);
    done += static_cast<size_t>(n);
  }
}

void sync(int fd, const std::string& path) {
  if (::fsync(fd) != 0) throw_errno(path);
}

// Creates `dir`, or takes an existing one without a snapshot in it.
void prepare_directory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0) return;
  if (errno != EEXIST) throw_errno(dir);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw_errno(dir);
  if (!S_ISDIR(st.st_mode)) fail("{}: not a directory", dir);
  for (const char* name : {SnapshotManifest::kFileName, SnapshotManifest::kMemoryFileName,
                           SnapshotManifest::kStateFileName}) {
    if (::access(snapshot_path(dir, name).c_str(), F_OK) == 0) {
      fail("{}: already holds a snapshot ({}); choose a new directory", dir, name);
    }
  }
}

}  // namespace

std::string snapshot_path(const std::string& dir, const std::string& name) {
  return dir.ends_with('/') ? dir + name : dir + "/" + name;
}

UniqueFd create_snapshot_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) throw_errno(path);
  return fd;
}

void write_snapshot_files(const std::string& dir, const GuestMemory& memory,
                          const std::vector<uint8_t>& state, SnapshotManifest manifest,
                          const std::function<void(const std::string& dir)>& write_more) {
  prepare_directory(dir);
  const std::string memory_path = snapshot_path(dir, SnapshotManifest::kMemoryFileName);
  {
    const UniqueFd fd = create_snapshot_file(memory_path);
    memory.save(fd.get(), memory_path);
    sync(fd.get(), memory_path);
  }
  const std::string state_path = snapshot_path(dir, SnapshotManifest::kStateFileName);
  {
    const UniqueFd fd = create_snapshot_file(state_path);
    write_all(fd.get(), state, state_path);
    sync(fd.get(), state_path);
  }
  write_more(dir);
  manifest.memory_file_bytes = memory.ram_size();
  manifest.state_file_bytes = state.size();
  manifest.state_checksum = fnv1a64(state);
  const std::string text = manifest_to_json(manifest);
  const std::string manifest_path = snapshot_path(dir, SnapshotManifest::kFileName);
  const std::string temporary = manifest_path + ".tmp";
  {
    const UniqueFd fd = create_snapshot_file(temporary);
    write_all(fd.get(), std::vector<uint8_t>(text.begin(), text.end()), temporary);
    sync(fd.get(), temporary);
  }
  if (::rename(temporary.c_str(), manifest_path.c_str()) != 0) throw_errno(manifest_path);
  const UniqueFd directory(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory) throw_errno(dir);
  sync(directory.get(), dir);
}

SnapshotFiles read_snapshot_files(const std::string& dir, const std::string& option) {
  const std::string manifest_path = snapshot_path(dir, SnapshotManifest::kFileName);
  const std::vector<uint8_t> text = read_file(manifest_path, option, kMaxManifestBytes);
  SnapshotFiles files;
  files.manifest =
      parse_manifest(std::string_view(reinterpret_cast<const char*>(text.data()), text.size()),
                     option + " " + manifest_path);
  check_restorable(files.manifest, vmm_build_version(), host_cpu_identity(), option + " " + dir);
  const std::string state_path = snapshot_path(dir, SnapshotManifest::kStateFileName);
  const std::vector<uint8_t> state = read_file(state_path, option, kMaxStateBytes);
  if (state.size() != files.manifest.state_file_bytes) {
    fail("{} {}: {} bytes, the manifest says {} (a truncated or replaced state file)", option,
         state_path, state.size(), files.manifest.state_file_bytes);
  }
  if (fnv1a64(state) != files.manifest.state_checksum) {
    fail("{} {}: checksum mismatch (the file is corrupt)", option, state_path);
  }
  files.state = StateArchive::parse(state, option + " " + state_path);
  files.memory_path = snapshot_path(dir, SnapshotManifest::kMemoryFileName);
  return files;
}

kvm::CpuIdentity host_cpu_identity() {
  std::vector<kvm_cpuid_entry2> leaves;
  for (const uint32_t function : {0u, 1u}) {
    kvm_cpuid_entry2 entry{};
    entry.function = function;
    __cpuid_count(function, 0, entry.eax, entry.ebx, entry.ecx, entry.edx);
    leaves.push_back(entry);
  }
  return kvm::cpu_identity(leaves);
}

MachineConfig restored_config(const RestoreConfig& restore, const SnapshotManifest& manifest) {
  MachineConfig config = manifest.machine;
  const std::string option = "--restore " + restore.snapshot_dir;
  if (restore.disks) {
    if (restore.disks->size() != config.disks.size()) {
      fail("{}: {} --disk given; the snapshot's guest has {}", option, restore.disks->size(),
           config.disks.size());
    }
    config.disks = *restore.disks;
  }
  if (restore.nets) {
    if (restore.nets->size() != config.nets.size()) {
      fail("{}: {} --net given; the snapshot's guest has {}", option, restore.nets->size(),
           config.nets.size());
    }
    config.nets = *restore.nets;
  }
  if (restore.vsock) {
    if (!config.vsock) fail("{}: --vsock given; the snapshot's guest has no vsock device", option);
    config.vsock = restore.vsock;
  }
  copy_restore_choices(restore, config);
  // Nothing is booted: the kernel and initramfs are in the restored RAM.
  config.build_initramfs = false;
  config.initrd_path.clear();
  return config;
}

}  // namespace vmm
