#include "boot/initramfs/initramfs.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <set>

#include "base/util/error.hpp"
#include "boot/initramfs/cpio.hpp"
#include "boot/initramfs/init/init_abi.h"
#include "boot/kernel_release.hpp"

namespace vmm::boot {

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kFolderPermissions = 0755;
constexpr uint32_t kFilePermissions = 0644;
constexpr uint32_t kInitPermissions = 0755;
constexpr uint32_t kRunJobPermissions = 0600;  // the caller's environment: init's alone
// The kernel opens /dev/console for init before anything mounts devtmpfs: TTYAUX_MAJOR, 1.
constexpr uint32_t kConsoleMajor = 5;
constexpr uint32_t kConsoleMinor = 1;
constexpr uint32_t kConsolePermissions = 0600;
constexpr std::string_view kMountPoints[] = {"proc", "sys", "root"};
constexpr std::string_view kWantedModules[] = {"virtio_net", "vmw_vsock_virtio_transport",
                                               "pvpanic_mmio", "virtio_console", "virtiofs"};
// virtiofs depends on fuse (modules.dep brings it), the root's overlay on overlay.
constexpr std::string_view kRunModules[] = {"virtio_mmio", "virtio_console", "virtiofs", "overlay"};
constexpr std::string_view kWantedRunModules[] = {"pvpanic_mmio"};

// The archive names entries relative to the root; the ABI's paths are absolute.
std::string entry_name(std::string_view abi_path) {
  return std::string(abi_path.substr(1));
}

// Adds the folders above `name` that the archive does not have yet, outermost first.
void add_parent_folders(CpioWriter& cpio, std::set<std::string>& added, std::string_view name) {
  for (size_t slash = name.find('/'); slash != std::string_view::npos;
       slash = name.find('/', slash + 1)) {
    std::string folder(name.substr(0, slash));
    if (added.insert(folder).second) cpio.add_directory(folder, kFolderPermissions);
  }
}

bool has_modules_dep(const fs::path& folder) {
  std::error_code error;
  return fs::is_regular_file(folder / "modules.dep", error);
}

// A folder named like a release ("6.1.0-50-amd64"), not like "modules" or "mods".
bool named_like_release(const std::string& name) {
  return is_plausible_release(name) && name.find('.') != std::string::npos;
}

// The releases whose modules sit in `folder`'s subfolders or in its lib/modules/.
std::set<std::string> releases_below(const fs::path& folder) {
  std::set<std::string> releases;
  for (const fs::path& parent : {folder, folder / "lib" / "modules"}) {
    std::error_code error;
    for (fs::directory_iterator it(parent, error), end; !error && it != end; it.increment(error)) {
      if (has_modules_dep(it->path())) releases.insert(it->path().filename().string());
    }
  }
  return releases;
}

[[noreturn]] void fail_release_mismatch(const std::string& name, const std::set<std::string>& found,
                                        const std::string& kernel_name,
                                        const std::string& release) {
  std::string list;
  for (const std::string& other : found) list += (list.empty() ? "" : ", ") + other;
  fail("{}: modules for {}, but {} is {}", name, list, kernel_name, release);
}

}  // namespace

std::vector<KernelModule> initramfs_modules(const ModuleTree& tree,
                                            std::string_view root_fs_module) {
  const std::string_view required[] = {"virtio_mmio", "virtio_blk", root_fs_module};
  return tree.load_order(required, kWantedModules);
}

std::vector<KernelModule> run_initramfs_modules(const ModuleTree& tree) {
  return tree.load_order(kRunModules, kWantedRunModules);
}

Initramfs::Initramfs(const InitramfsSpec& spec) {
  // First: a job the guest can't take fails before any module is read.
  if (spec.run_job) run_job_ = encode_run_job(*spec.run_job);
  const ModuleTree tree = ModuleTree::load(spec.modules);
  modules_ =
      spec.run_job ? run_initramfs_modules(tree) : initramfs_modules(tree, spec.root_fs_module);
  files_.reserve(modules_.size());
  for (const KernelModule& module : modules_) {
    files_.push_back(ModuleFile::open(module));
    load_list_.insert(load_list_.end(), module.name.begin(), module.name.end());
    load_list_.push_back('\n');
  }

  std::set<std::string> folders;
  cpio_.add_file("init", kInitPermissions, spec.init_program);
  add_parent_folders(cpio_, folders, "dev/console");
  cpio_.add_char_device("dev/console", kConsolePermissions, kConsoleMajor, kConsoleMinor);
  for (std::string_view mount_point : kMountPoints) {
    cpio_.add_directory(mount_point, kFolderPermissions);
  }
  const std::string module_dir = entry_name(VMM_INIT_MODULE_DIR);
  // The folder itself too (its trailing '/' makes it a parent): it is there even when empty.
  add_parent_folders(cpio_, folders, module_dir + "/");
  for (size_t i = 0; i < modules_.size(); ++i) {
    const std::string file = module_dir + "/" + modules_[i].name + ".ko";
    add_parent_folders(cpio_, folders, file);
    // Points into files_, whose storage stays put when this moves.
    const ModuleFile* module_file = &files_[i];
    cpio_.add_file(file, kFilePermissions, module_file->size(),
                   [module_file, name = modules_[i].name, release = spec.release,
                    tree = spec.modules.name](std::span<uint8_t> out) {
                     module_file->copy_to(out);
                     // The check a folder's name can't give: modules of another build won't load.
                     const auto built_for = module_vermagic_release(out);
                     if (built_for && *built_for != release) {
                       fail("{}: {} is built for {}, not for the kernel's {}", tree, name,
                            *built_for, release);
                     }
                   });
  }
  const std::string list = entry_name(VMM_INIT_MODULE_LIST);
  add_parent_folders(cpio_, folders, list);
  cpio_.add_file(list, kFilePermissions, load_list_);
  if (spec.run_job) {
    const std::string job = entry_name(VMM_INIT_RUN_JOB);
    add_parent_folders(cpio_, folders, job);
    cpio_.add_file(job, kRunJobPermissions, run_job_);
  }
}

void Initramfs::write_to(std::span<uint8_t> out) const {
  cpio_.write_to(out);
}

std::vector<uint8_t> Initramfs::bytes() const {
  return cpio_.archive();
}

std::vector<uint8_t> build_initramfs(const InitramfsSpec& spec) {
  return Initramfs(spec).bytes();
}

ModulesDir find_modules_dir(const std::optional<std::string>& given, const std::string& release,
                            const std::string& kernel_name, const std::string& system_modules) {
  if (!given) {
    const std::string path = system_modules + "/" + release;
    std::error_code error;
    if (!fs::is_directory(path, error)) {
      fail(
          "{} (release {}): no modules at {}; pass --modules DIR (the kernel package's "
          "lib/modules/{}) or --initrd FILE",
          kernel_name, release, path, release);
    }
    return {path, path};
  }
  const std::string name = "--modules " + *given;
  struct stat st {};
  if (::stat(given->c_str(), &st) != 0) throw_errno(name);
  if (!S_ISDIR(st.st_mode)) fail("{}: not a directory", name);
  const fs::path folder(*given);
  for (const fs::path& inside : {folder / "lib" / "modules" / release, folder / release}) {
    if (has_modules_dep(inside)) return {inside.string(), name};
  }
  if (has_modules_dep(folder)) {
    // Judged by where it leads: a kernel package's "modules" link points at lib/modules/<release>.
    std::error_code error;
    const std::string folder_name = fs::canonical(folder, error).filename().string();
    if (!named_like_release(folder_name) || folder_name == release) return {*given, name};
    fail_release_mismatch(name, {folder_name}, kernel_name, release);
  }
  const std::set<std::string> others = releases_below(folder);
  if (!others.empty()) fail_release_mismatch(name, others, kernel_name, release);
  fail("{}: no modules.dep (not a kernel modules directory, nor one holding lib/modules/{})", name,
       release);
}

}  // namespace vmm::boot
