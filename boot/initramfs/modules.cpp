#include "boot/initramfs/modules.hpp"

#include <elf.h>
#include <fcntl.h>
#include <lzma.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "base/util/error.hpp"
#include "base/util/file.hpp"

namespace vmm::boot {

namespace {

constexpr std::string_view kModuleSuffix = ".ko";
constexpr std::array<std::string_view, 4> kCompressionSuffixes = {"", ".xz", ".zst", ".gz"};
constexpr std::string_view kVermagic = "vermagic=";
// What a decompressor's output starts at, and grows by doubling up to the bound.
constexpr size_t kFirstOutputSize = size_t{256} << 10;
// liblzma's memory limit: modules are compressed with small dictionaries (1 MiB in Kbuild).
constexpr uint64_t kXzMemoryLimit = uint64_t{64} << 20;

std::string_view as_text(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Calls `on_line(line, number)` for each non-empty line of `text`, numbered from 1.
template <typename F>
void for_each_line(std::string_view text, F&& on_line) {
  size_t number = 0;
  while (!text.empty()) {
    const size_t end = std::min(text.find('\n'), text.size());
    ++number;
    if (end > 0) on_line(text.substr(0, end), number);
    text.remove_prefix(std::min(end + 1, text.size()));
  }
}

// Calls `on_word(word)` for each space-separated word of `text`.
template <typename F>
void for_each_word(std::string_view text, F&& on_word) {
  while (!text.empty()) {
    const size_t end = std::min(text.find(' '), text.size());
    if (end > 0) on_word(text.substr(0, end));
    text.remove_prefix(std::min(end + 1, text.size()));
  }
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

void check_output_bound(size_t used, const std::string& path) {
  if (used > ModuleFile::kMaxModuleSize) {
    fail("{}: decompresses to more than {} MiB (not a kernel module)", path,
         ModuleFile::kMaxModuleSize >> 20);
  }
}

// Makes room for more decompressed output: doubles `out` up to one byte past the bound, so that
// output reaching that byte proves the module too large.
void grow_output(std::vector<uint8_t>& out, size_t used, const std::string& path) {
  check_output_bound(used, path);
  out.resize(std::min(std::max(out.size() * 2, kFirstOutputSize), ModuleFile::kMaxModuleSize + 1));
}

std::vector<uint8_t> decompress_xz(std::span<const uint8_t> input, const std::string& path) {
  lzma_stream stream = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&stream, kXzMemoryLimit, LZMA_CONCATENATED) != LZMA_OK) {
    fail("{}: cannot start the xz decoder", path);
  }
  const std::unique_ptr<lzma_stream, decltype(&lzma_end)> end(&stream, &lzma_end);
  stream.next_in = input.data();
  stream.avail_in = input.size();
  std::vector<uint8_t> out;
  for (;;) {
    if (stream.avail_out == 0) {
      grow_output(out, stream.total_out, path);
      stream.next_out = out.data() + stream.total_out;
      stream.avail_out = out.size() - stream.total_out;
    }
    const lzma_ret ret = lzma_code(&stream, LZMA_FINISH);
    if (ret == LZMA_STREAM_END) break;
    if (ret == LZMA_MEMLIMIT_ERROR) {
      fail("{}: xz data needs more than {} MiB to decode", path, kXzMemoryLimit >> 20);
    }
    if (ret != LZMA_OK) fail("{}: truncated or corrupt xz data (liblzma error {})", path, int{ret});
  }
  check_output_bound(stream.total_out, path);
  out.resize(stream.total_out);
  return out;
}

// Alpine's kernels compress their modules with gzip.
std::vector<uint8_t> decompress_gzip(std::span<const uint8_t> input, const std::string& path) {
  z_stream stream{};
  constexpr int kGzipOnly = 16 + MAX_WBITS;  // zlib's way to ask for the gzip wrapper
  if (inflateInit2(&stream, kGzipOnly) != Z_OK) fail("{}: cannot start the gzip decoder", path);
  const std::unique_ptr<z_stream, decltype(&inflateEnd)> owner(&stream, &inflateEnd);
  stream.next_in = const_cast<Bytef*>(input.data());  // zlib's API is not const-correct
  stream.avail_in = static_cast<uInt>(input.size());  // at most kMaxModuleSize: fits
  std::vector<uint8_t> out;
  size_t used = 0;
  while (true) {
    if (used == out.size()) grow_output(out, used, path);
    stream.next_out = out.data() + used;
    stream.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - used, UINT32_MAX));
    const int status = inflate(&stream, Z_NO_FLUSH);
    used = out.size() - stream.avail_out;
    if (status == Z_STREAM_END) {
      if (stream.avail_in == 0) break;
      // Concatenated members, as gzip allows: one stream's end is the next one's start.
      if (inflateReset(&stream) != Z_OK) fail("{}: corrupt gzip data", path);
      continue;
    }
    if (status == Z_BUF_ERROR && stream.avail_in == 0) fail("{}: truncated gzip data", path);
    if (status != Z_OK && status != Z_BUF_ERROR) {
      fail("{}: corrupt gzip data ({})", path, stream.msg != nullptr ? stream.msg : "zlib error");
    }
  }
  check_output_bound(used, path);
  out.resize(used);
  return out;
}

std::vector<uint8_t> decompress_zstd(std::span<const uint8_t> input, const std::string& path) {
  const std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(),
                                                                     &ZSTD_freeDCtx);
  if (!context) fail("{}: cannot start the zstd decoder", path);
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  std::vector<uint8_t> out;
  size_t used = 0;
  size_t frame_left = 1;  // nonzero while a frame is unfinished; an empty input is truncated
  while (in.pos < in.size || frame_left != 0) {
    if (used == out.size()) grow_output(out, used, path);
    ZSTD_outBuffer chunk{out.data(), out.size(), used};
    frame_left = ZSTD_decompressStream(context.get(), &chunk, &in);
    if (ZSTD_isError(frame_left)) {
      fail("{}: corrupt zstd data ({})", path, ZSTD_getErrorName(frame_left));
    }
    // All input taken, room left for output, and the frame still unfinished: the data ends early.
    if (frame_left != 0 && in.pos == in.size && chunk.pos < chunk.size) {
      fail("{}: truncated zstd data", path);
    }
    used = chunk.pos;
  }
  check_output_bound(used, path);
  out.resize(used);
  return out;
}

}  // namespace

std::optional<std::string> module_name_of_path(std::string_view path) {
  const std::string_view file = path.substr(path.rfind('/') + 1);
  const size_t suffix_at = file.rfind(kModuleSuffix);
  if (suffix_at == 0 || suffix_at == std::string_view::npos) return std::nullopt;
  const std::string_view compression = file.substr(suffix_at + kModuleSuffix.size());
  if (std::find(kCompressionSuffixes.begin(), kCompressionSuffixes.end(), compression) ==
      kCompressionSuffixes.end()) {
    return std::nullopt;
  }
  return normalized_module_name(file.substr(0, suffix_at));
}

std::string normalized_module_name(std::string_view name) {
  std::string normalized(name);
  std::replace(normalized.begin(), normalized.end(), '-', '_');
  return normalized;
}

ModuleTree ModuleTree::load(const ModulesDir& dir) {
  const std::string dep_path = dir.path + "/modules.dep";
  if (!exists(dep_path)) fail("{}: no modules.dep (not a kernel modules directory)", dir.name);
  ModuleTree tree;
  tree.dir_ = dir;
  tree.dep_text_ = read_file(dep_path, "");
  // "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/..."
  for_each_line(as_text(tree.dep_text_), [&](std::string_view line, size_t number) {
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      fail("{}:{}: no ':' (not a modules.dep line)", dep_path, number);
    const std::string_view path = line.substr(0, colon);
    const auto name = module_name_of_path(path);
    if (!name) fail("{}:{}: {} is not a module (.ko, .ko.xz, .ko.zst)", dep_path, number, path);
    if (path.front() == '/') {
      fail("{}:{}: {} is absolute (vmm reads paths relative to the modules folder)", dep_path,
           number, path);
    }
    // A name listed twice: the first wins, as for modprobe.
    tree.modules_.try_emplace(*name, Entry{path, line.substr(colon + 1)});
  });
  const std::string builtin_path = dir.path + "/modules.builtin";
  if (exists(builtin_path)) {
    const std::vector<uint8_t> builtin = read_file(builtin_path, "");
    for_each_line(as_text(builtin), [&](std::string_view line, size_t) {
      if (auto name = module_name_of_path(line)) tree.builtin_.insert(std::move(*name));
    });
  }
  tree.load_soft_dependencies();
  return tree;
}

// "softdep ext4 pre: crypto-crc32c post: x": the "pre:" names, each a module or an alias.
void ModuleTree::load_soft_dependencies() {
  const std::string softdep_path = dir_.path + "/modules.softdep";
  if (!exists(softdep_path)) return;
  const std::vector<uint8_t> text = read_file(softdep_path, "");
  std::vector<std::pair<std::string, std::string>> wanted;  // (module, name or alias)
  for_each_line(as_text(text), [&](std::string_view line, size_t) {
    std::vector<std::string_view> words;
    for_each_word(line, [&](std::string_view word) { words.push_back(word); });
    if (words.size() < 3 || words[0] != "softdep") return;
    const std::string module = normalized_module_name(words[1]);
    bool pre = false;
    for (size_t i = 2; i < words.size(); ++i) {
      if (words[i].ends_with(':')) {
        pre = words[i] == "pre:";
      } else if (pre) {
        wanted.emplace_back(module, std::string(words[i]));
      }
    }
  });
  std::unordered_map<std::string, std::vector<std::string>> aliases;  // read only if needed
  bool aliases_read = false;
  for (const auto& [module, name] : wanted) {
    std::vector<std::string> providers{normalized_module_name(name)};
    if (!builtin_.contains(providers.front()) && !modules_.contains(providers.front())) {
      if (!aliases_read) {
        aliases = read_aliases();
        aliases_read = true;
      }
      const auto found = aliases.find(name);
      providers = found == aliases.end() ? std::vector<std::string>{} : found->second;
    }
    // Built in: nothing to load. Else a generic implementation first: it runs on any CPU, where
    // an accelerated one (crc32c_intel) fails to load without its instructions.
    if (std::any_of(providers.begin(), providers.end(),
                    [&](const std::string& p) { return builtin_.contains(p); })) {
      continue;
    }
    std::stable_partition(providers.begin(), providers.end(),
                          [](const std::string& p) { return p.ends_with("_generic"); });
    for (const std::string& provider : providers) {
      if (modules_.contains(provider)) {
        soft_dependencies_[module].push_back(provider);
        break;
      }
    }
  }
}

// modules.alias: "alias crypto-crc32c crc32c_generic", an alias to each module providing it.
std::unordered_map<std::string, std::vector<std::string>> ModuleTree::read_aliases() const {
  std::unordered_map<std::string, std::vector<std::string>> aliases;
  const std::string alias_path = dir_.path + "/modules.alias";
  if (!exists(alias_path)) return aliases;
  const std::vector<uint8_t> text = read_file(alias_path, "");
  for_each_line(as_text(text), [&](std::string_view line, size_t) {
    std::vector<std::string_view> words;
    for_each_word(line, [&](std::string_view word) { words.push_back(word); });
    if (words.size() == 3 && words[0] == "alias") {
      aliases[std::string(words[1])].push_back(normalized_module_name(words[2]));
    }
  });
  return aliases;
}

bool ModuleTree::is_builtin(std::string_view module) const {
  return builtin_.contains(normalized_module_name(module));
}

bool ModuleTree::contains(std::string_view module) const {
  return modules_.contains(normalized_module_name(module));
}

// A depth-first walk of modules.dep: a module goes into the order after its dependencies.
class ModuleTree::Resolver {
 public:
  explicit Resolver(const ModuleTree& tree) : tree_(tree) {}

  void visit(const std::string& name, const Entry& entry) {
    const auto [state, first_visit] = done_.try_emplace(name, false);
    if (!first_visit) {
      if (state->second) return;
      fail("{}: modules.dep has a dependency cycle: {}", tree_.dir_.name, cycle_to(name));
    }
    chain_.push_back(name);
    if (const auto soft = tree_.soft_dependencies_.find(name);
        soft != tree_.soft_dependencies_.end()) {
      // A soft dependency already on the way (a soft cycle) is no error: modprobe ignores it too.
      for (const std::string& dependency : soft->second) {
        if (!done_.contains(dependency)) visit(dependency, tree_.modules_.at(dependency));
      }
    }
    for_each_word(entry.dependencies, [&](std::string_view dependency_path) {
      const auto dependency = module_name_of_path(dependency_path);
      if (!dependency) {
        fail("{}: modules.dep: {} depends on {}, which is not a module", tree_.dir_.name, name,
             dependency_path);
      }
      if (tree_.builtin_.contains(*dependency)) return;
      const auto found = tree_.modules_.find(*dependency);
      if (found == tree_.modules_.end()) {
        fail("{}: {} depends on {}, which modules.dep does not list (an incomplete modules tree)",
             tree_.dir_.name, name, *dependency);
      }
      visit(*dependency, found->second);
    });
    chain_.pop_back();
    done_[name] = true;  // looked up again: the walk below may have rehashed the map
    order_.push_back({name, tree_.dir_.path + "/" + std::string(entry.path)});
  }

  std::vector<KernelModule> take() { return std::move(order_); }

 private:
  // "a -> b -> a", from where `name` entered the chain.
  std::string cycle_to(const std::string& name) const {
    std::string cycle;
    for (auto it = std::find(chain_.begin(), chain_.end(), name); it != chain_.end(); ++it) {
      cycle += *it + " -> ";
    }
    return cycle + name;
  }

  const ModuleTree& tree_;
  std::unordered_map<std::string, bool> done_;  // false while its dependencies are being walked
  std::vector<std::string> chain_;
  std::vector<KernelModule> order_;
};

std::vector<KernelModule> ModuleTree::load_order(std::span<const std::string_view> required,
                                                 std::span<const std::string_view> wanted) const {
  Resolver resolver(*this);
  const auto take = [&](std::string_view module, bool must_exist) {
    const std::string name = normalized_module_name(module);
    if (builtin_.contains(name)) return;
    const auto found = modules_.find(name);
    if (found != modules_.end()) {
      resolver.visit(name, found->second);
    } else if (must_exist) {
      fail("{}: no module {} (neither built into the kernel nor in modules.dep)", dir_.name, name);
    }
  };
  for (std::string_view module : required) take(module, true);
  for (std::string_view module : wanted) take(module, false);
  return resolver.take();
}

ModuleFile ModuleFile::open(const KernelModule& module) {
  ModuleFile file;
  file.path_ = module.path;
  const std::string& path = file.path_;
  uint8_t magic[SELFMAG] = {};
  if (path.ends_with(".ko")) {
    file.file_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!file.file_) throw_errno(path);
    struct stat st {};
    if (::fstat(file.file_.get(), &st) != 0) throw_errno(path);
    if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
    file.size_ = static_cast<uint64_t>(st.st_size);
    if (file.size_ > kMaxModuleSize) fail("{}: {} bytes, more than a module has", path, file.size_);
    if (file.size_ >= SELFMAG) file.copy_to({magic, SELFMAG});
  } else {
    const std::vector<uint8_t> compressed = read_file(path, "", kMaxModuleSize);
    if (path.ends_with(".xz")) {
      file.decompressed_ = decompress_xz(compressed, path);
    } else if (path.ends_with(".zst")) {
      file.decompressed_ = decompress_zstd(compressed, path);
    } else {
      file.decompressed_ = decompress_gzip(compressed, path);
    }
    file.size_ = file.decompressed_.size();
    std::copy_n(file.decompressed_.begin(), std::min(file.size_, size_t{SELFMAG}), magic);
  }
  if (file.size_ < SELFMAG || std::memcmp(magic, ELFMAG, SELFMAG) != 0) {
    fail("{}: not a kernel module (no ELF header)", path);
  }
  return file;
}

void ModuleFile::copy_to(std::span<uint8_t> out) const {
  if (out.size() > size_) fail("{}: {} bytes asked of a {}-byte module", path_, out.size(), size_);
  if (!file_) {
    std::copy_n(decompressed_.begin(), out.size(), out.begin());
    return;
  }
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(file_.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(path_);
    if (n == 0) fail("{}: shorter than when it was opened (changed while vmm read it)", path_);
    done += static_cast<size_t>(n);
  }
}

std::optional<std::string_view> module_vermagic_release(std::span<const uint8_t> module) {
  const std::string_view text = as_text(module);
  const size_t at = text.find(kVermagic);
  if (at == std::string_view::npos) return std::nullopt;
  const std::string_view rest = text.substr(at + kVermagic.size());
  return rest.substr(0, std::min({rest.find(' '), rest.find('\0'), rest.size()}));
}

}  // namespace vmm::boot
