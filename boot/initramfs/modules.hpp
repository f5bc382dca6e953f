#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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
  // Reads `dir`'s modules.dep (which must exist) and modules.builtin (when there is one).
  static ModuleTree load(const ModulesDir& dir);

  bool is_builtin(std::string_view module) const;
  bool contains(std::string_view module) const;

  // The modules to load, dependencies first, each once, builtins left out. A `required` module
  // that is neither builtin nor in the tree is an error naming it; a `wanted` one is taken only
  // when the kernel has it. A dependency missing from the tree, or a cycle, is an error.
  std::vector<KernelModule> load_order(std::span<const std::string_view> required,
                                       std::span<const std::string_view> wanted) const;

 private:
  struct Entry {
    std::string_view path;          // relative to the folder, as modules.dep has it
    std::string_view dependencies;  // the rest of the line: paths separated by spaces
  };
  class Resolver;

  ModulesDir dir_;
  std::vector<uint8_t> dep_text_;  // modules.dep; the entries point into it
  std::unordered_map<std::string, Entry> modules_;
  std::unordered_set<std::string> builtin_;
};

// A module's bytes, uncompressed: a .ko is mapped read-only (so copying it into the archive is
// its only copy); a .ko.xz (liblzma) or .ko.zst (libzstd) is decompressed into memory, at most
// kMaxModuleSize bytes. Each must be an ELF file.
class ModuleImage {
 public:
  static constexpr size_t kMaxModuleSize = size_t{64} << 20;

  static ModuleImage load(const KernelModule& module);

  std::span<const uint8_t> bytes() const { return bytes_; }

 private:
  struct Unmap {
    size_t size;
    void operator()(const uint8_t* mapping) const;
  };

  std::unique_ptr<const uint8_t, Unmap> mapping_{nullptr, Unmap{0}};
  std::vector<uint8_t> decompressed_;
  std::span<const uint8_t> bytes_;
};

// The release a module was built for: the first word of its "vermagic=" modinfo string
// ("6.1.0-57-cloud-amd64"); nullopt when it has none.
std::optional<std::string_view> module_vermagic_release(std::span<const uint8_t> module);

}  // namespace vmm::boot
