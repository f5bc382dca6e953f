#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "boot/initramfs/cpio.hpp"
#include "boot/initramfs/modules.hpp"
#include "boot/initramfs/run_job.hpp"

namespace vmm::boot {

// What vmm's own initramfs is built from (boot/initramfs/init/init_abi.h has its layout).
struct InitramfsSpec {
  std::string release;         // the kernel's (kernel_release): every module must be built for it
  ModulesDir modules;          // find_modules_dir's answer
  std::string root_fs_module;  // detect_root_fs_module or rootfstype_module: "ext4", "xfs", ...
  std::span<const uint8_t> init_program;  // the static /init
  // `vmm run`: the archive holds the job and run_initramfs_modules; root_fs_module is unused.
  // (Its initializer lets a disk boot's spec leave it out.)
  std::optional<RunJob> run_job = std::nullopt;
};

// The modules the guest needs, with their dependencies, in load order: virtio_mmio, virtio_blk and
// `root_fs_module` must be there (built in or as modules); virtio_net, the vsock transport,
// pvpanic_mmio (so a guest panic reaches vmm's pvpanic device), virtio_console (--console's hvc0)
// and virtiofs (--share) are taken when the kernel has them.
std::vector<KernelModule> initramfs_modules(const ModuleTree& tree,
                                            std::string_view root_fs_module);

// The modules `vmm run`'s guest needs, as initramfs_modules: virtio_mmio, virtio_console, virtiofs
// (with fuse) and overlay must be there; pvpanic_mmio is taken when the kernel has it.
std::vector<KernelModule> run_initramfs_modules(const ModuleTree& tree);

// vmm's initramfs, an uncompressed newc cpio archive (init_abi.h has its layout): /init, the mount
// points and /dev/console, each module uncompressed as VMM_INIT_MODULE_DIR/<name>.ko,
// VMM_INIT_MODULE_LIST, and with a run job VMM_INIT_RUN_JOB. Made in two steps so that each module
// is copied once, straight to where the archive goes (guest memory): constructing it reads the
// modules tree, resolves the modules and opens them (decompressing compressed ones), so a bad tree
// or a missing module fails here; write_to then copies. Nothing is written to disk.
class Initramfs {
 public:
  explicit Initramfs(const InitramfsSpec& spec);
  // Movable: the archive's description points into vectors, which keep their storage in a move.
  Initramfs(Initramfs&&) = default;
  Initramfs& operator=(Initramfs&&) = default;

  const std::vector<KernelModule>& modules() const { return modules_; }
  size_t size() const { return cpio_.size(); }
  // Writes the archive into `out` (exactly size() bytes). A module built for another release than
  // the kernel's (its vermagic, which a .ko shows only once read) is an error here.
  void write_to(std::span<uint8_t> out) const;
  // The archive in a vector of its own.
  std::vector<uint8_t> bytes() const;

 private:
  std::vector<KernelModule> modules_;
  std::vector<ModuleFile> files_;
  std::vector<uint8_t> load_list_;
  std::vector<uint8_t> run_job_;
  CpioWriter cpio_;
};

// Initramfs(spec).bytes().
std::vector<uint8_t> build_initramfs(const InitramfsSpec& spec);

// Where the modules of kernel `release` are. `given` is --modules DIR: the release's own folder
// (holding modules.dep), or a folder holding it as <release>/ or lib/modules/<release>/ (a kernel
// package unpacked); a folder for another release is an error that says which. Without --modules,
// `system_modules`/<release> when it exists; else an error that says what to pass. `kernel_name`
// ("--kernel vmlinuz") names the kernel in messages.
ModulesDir find_modules_dir(const std::optional<std::string>& given, const std::string& release,
                            const std::string& kernel_name,
                            const std::string& system_modules = "/lib/modules");

}  // namespace vmm::boot
