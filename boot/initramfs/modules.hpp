#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/util/unique_fd.hpp"

namespace vmm::boot {

// A kernel release's modules folder (the one holding modules.dep).
struct ModulesDir {
  std::string path;
  // How messages call it: "--modules /x" when the user gave it, else the path.
  std::string name;
};

// A module to load: its name as the kernel knows it ('-' turned into '_': "pvpanic_mmio") and its
// file (.ko, .ko.xz or .ko.zst).
struct KernelModule {
  std::string name;
  std::string path;
};

// The module a modules.dep path names: "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko.xz" ->
// "pvpanic_mmio"; nullopt when the path's file is not a module (no ".ko" suffix).
std::optional<std::string> module_name_of_path(std::string_view path);

// "pvpanic-mmio" -> "pvpanic_mmio": the kernel treats '-' and '_' in module names alike.
std::string normalized_module_name(std::string_view name);

// One kernel's modules: its modules.dep and modules.builtin, parsed once.
class ModuleTree {
 public:
  // Reads `dir`'s modules.dep (which must exist), modules.builtin and modules.softdep (when there
  // are), and modules.alias when a soft dependency names an alias.
  static ModuleTree load(const ModulesDir& dir);

  bool is_builtin(std::string_view module) const;
  bool contains(std::string_view module) const;

  // The modules to load, dependencies first, each once, builtins left out. A module's soft
  // dependencies ("softdep ext4 pre: crypto-crc32c": what it asks the kernel for by name, which
  // only modprobe would load) come before it when the tree has them: an alias goes to the module
  // providing it (a *_generic one first, as it runs on any CPU), and none is fine. A `required`
  // module that is neither builtin nor in the tree is an error naming it; a `wanted` one is taken
  // only when the kernel has it. A dependency missing from the tree, or a cycle, is an error.
  std::vector<KernelModule> load_order(std::span<const std::string_view> required,
                                       std::span<const std::string_view> wanted) const;

 private:
  struct Entry {
    std::string_view path;          // relative to the folder, as modules.dep has it
    std::string_view dependencies;  // the rest of the line: paths separated by spaces
  };
  class Resolver;

  void load_soft_dependencies();
  std::unordered_map<std::string, std::vector<std::string>> read_aliases() const;

  ModulesDir dir_;
  std::vector<uint8_t> dep_text_;  // modules.dep; the entries point into it
  std::unordered_map<std::string, Entry> modules_;
  std::unordered_set<std::string> builtin_;
  // A module's soft "pre:" dependencies, each resolved to a module name (or dropped: builtin or
  // not there).
  std::unordered_map<std::string, std::vector<std::string>> soft_dependencies_;
};

// A module ready to go into the archive, uncompressed: a .ko is read from its file straight into
// its place when copied (no mapping, no buffer in between); a .ko.xz (liblzma) or .ko.zst (libzstd)
// is decompressed into memory when opened, at most kMaxModuleSize bytes. Each must be an ELF file.
class ModuleFile {
 public:
  static constexpr size_t kMaxModuleSize = size_t{64} << 20;

  static ModuleFile open(const KernelModule& module);

  size_t size() const { return size_; }
  // Writes the uncompressed module's first out.size() bytes (at most size()) into `out`.
  void copy_to(std::span<uint8_t> out) const;

 private:
  std::string path_;
  UniqueFd file_;                      // a .ko's
  std::vector<uint8_t> decompressed_;  // a .ko.xz's or .ko.zst's
  size_t size_ = 0;
};

// The release a module was built for: the first word of its "vermagic=" modinfo string
// ("6.1.0-57-cloud-amd64"); nullopt when it has none.
std::optional<std::string_view> module_vermagic_release(std::span<const uint8_t> module);

}  // namespace vmm::boot
