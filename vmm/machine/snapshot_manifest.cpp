#include "vmm/machine/snapshot_manifest.hpp"

#include <fmt/format.h>

#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"

namespace vmm {

namespace {

using nlohmann::json;

// Limits for an untrusted manifest.
constexpr size_t kMaxCpuidEntries = 256;
constexpr size_t kMaxStringBytes = 4096;

const char* snapshot_mode_name(DiskConfig::Snapshot mode) {
  switch (mode) {
    case DiskConfig::Snapshot::kFile: return "on";
    case DiskConfig::Snapshot::kMemory: return "mem";
    case DiskConfig::Snapshot::kOff: break;
  }
  return "off";
}

const char* io_engine_name(DiskConfig::IoEngine engine) {
  switch (engine) {
    case DiskConfig::IoEngine::kIoUring: return "io_uring";
    case DiskConfig::IoEngine::kThreadPool: return "threads";
    case DiskConfig::IoEngine::kAuto: break;
  }
  return "auto";
}

// Reads the manifest's fields, naming the one that is missing or wrong.
class Fields {
 public:
  Fields(const json& object, std::string where, std::string what)
      : object_(object), where_(std::move(where)), what_(std::move(what)) {
    if (!object_.is_object()) bad("", "is not an object");
  }

  [[noreturn]] void bad(std::string_view field, std::string_view why) const {
    std::string name = where_.empty() || field.empty() ? where_ + std::string(field)
                                                       : fmt::format("{}.{}", where_, field);
    fail("{}: {} {}", what_, name.empty() ? "the manifest" : name, why);
  }

  const json& at(const char* field) const {
    const auto it = object_.find(field);
    if (it == object_.end()) bad(field, "is missing");
    return *it;
  }

  template <typename T>
  T number(const char* field, T min = std::numeric_limits<T>::min(),
           T max = std::numeric_limits<T>::max()) const {
    const json& value = at(field);
    if (!value.is_number_integer()) bad(field, "is not an integer");
    if (value.is_number_unsigned()) {
      const auto n = value.get<uint64_t>();
      if (n > static_cast<uint64_t>(max) || (min > 0 && n < static_cast<uint64_t>(min))) {
        bad(field, "is out of range");
      }
      return static_cast<T>(n);
    }
    const auto n = value.get<int64_t>();
    if (n < static_cast<int64_t>(min) ||
        (n > 0 && static_cast<uint64_t>(n) > static_cast<uint64_t>(max))) {
      bad(field, "is out of range");
    }
    return static_cast<T>(n);
  }

  std::string string(const char* field) const {
    const json& value = at(field);
    if (!value.is_string()) bad(field, "is not a string");
    auto text = value.get<std::string>();
    if (text.size() > kMaxStringBytes) bad(field, "is too long");
    return text;
  }

  bool boolean(const char* field) const {
    const json& value = at(field);
    if (!value.is_boolean()) bad(field, "is not true or false");
    return value.get<bool>();
  }

  const json& array(const char* field, size_t max) const {
    const json& value = at(field);
    if (!value.is_array()) bad(field, "is not an array");
    if (value.size() > max) bad(field, "has too many entries");
    return value;
  }

  // A nested object's fields, named in errors by their path ("machine.disks[0]").
  Fields nested(const json& object, std::string where) const {
    return Fields(object, std::move(where), what_);
  }

  std::string child(const char* field, size_t index) const {
    return fmt::format("{}{}{}[{}]", where_, where_.empty() ? "" : ".", field, index);
  }
  std::string child(const char* field) const {
    return fmt::format("{}{}{}", where_, where_.empty() ? "" : ".", field);
  }

 private:
  const json& object_;
  std::string where_;
  std::string what_;
};

json machine_to_json(const SnapshotManifest& manifest) {
  const MachineConfig& machine = manifest.machine;
  json disks = json::array();
  for (size_t i = 0; i < machine.disks.size(); ++i) {
    const DiskConfig& disk = machine.disks[i];
    disks.push_back({{"path", disk.path},
                     {"read_only", disk.read_only},
                     {"serial", disk.serial},
                     {"io_engine", io_engine_name(disk.io_engine)},
                     {"snapshot", snapshot_mode_name(disk.snapshot)},
                     {"size_bytes", manifest.disk_sizes.at(i)}});
  }
  json nets = json::array();
  for (const NetConfig& net : machine.nets) {
    nets.push_back({{"tap", net.tap}, {"mac", net.mac ? json(format_mac(*net.mac)) : json()}});
  }
  json vsock;
  if (machine.vsock) {
    vsock = {{"guest_cid", machine.vsock->guest_cid}, {"uds_path", machine.vsock->uds_path}};
  }
  return json{{"cpus", machine.cpus},          {"memory_bytes", machine.memory_bytes},
              {"kernel", machine.kernel_path}, {"cmdline", machine.cmdline.value_or("")},
              {"disks", std::move(disks)},     {"nets", std::move(nets)},
              {"vsock", std::move(vsock)}};
}

DiskConfig::Snapshot parse_snapshot_mode(const Fields& fields, const std::string& name) {
  if (name == "off") return DiskConfig::Snapshot::kOff;
  if (name == "on") return DiskConfig::Snapshot::kFile;
  if (name == "mem") return DiskConfig::Snapshot::kMemory;
  fields.bad("snapshot", "is not off, on or mem");
}

DiskConfig::IoEngine parse_io_engine(const Fields& fields, const std::string& name) {
  if (name == "auto") return DiskConfig::IoEngine::kAuto;
  if (name == "io_uring") return DiskConfig::IoEngine::kIoUring;
  if (name == "threads") return DiskConfig::IoEngine::kThreadPool;
  fields.bad("io_engine", "is not auto, io_uring or threads");
}

void parse_machine(const Fields& fields, SnapshotManifest& manifest) {
  MachineConfig& machine = manifest.machine;
  machine.cpus = fields.number<uint32_t>("cpus", 1, kMaxCpus);
  machine.memory_bytes = fields.number<uint64_t>("memory_bytes", kMinMemoryBytes, kMaxMemoryBytes);
  machine.kernel_path = fields.string("kernel");
  if (std::string cmdline = fields.string("cmdline"); !cmdline.empty()) machine.cmdline = cmdline;
  const json& disks = fields.array("disks", kMaxVirtioDevices);
  for (size_t i = 0; i < disks.size(); ++i) {
    const Fields disk = fields.nested(disks[i], fields.child("disks", i));
    DiskConfig config;
    config.path = disk.string("path");
    config.read_only = disk.boolean("read_only");
    config.serial = disk.string("serial");
    config.io_engine = parse_io_engine(disk, disk.string("io_engine"));
    config.snapshot = parse_snapshot_mode(disk, disk.string("snapshot"));
    machine.disks.push_back(std::move(config));
    manifest.disk_sizes.push_back(disk.number<uint64_t>("size_bytes"));
  }
  const json& nets = fields.array("nets", kMaxVirtioDevices);
  for (size_t i = 0; i < nets.size(); ++i) {
    const Fields net = fields.nested(nets[i], fields.child("nets", i));
    NetConfig config;
    config.tap = net.string("tap");
    const json& mac = net.at("mac");
    if (!mac.is_null()) {
      const auto parsed = mac.is_string() ? parse_mac(mac.get<std::string>()) : std::nullopt;
      if (!parsed) net.bad("mac", "is not a MAC address");
      config.mac = *parsed;
    }
    machine.nets.push_back(std::move(config));
  }
  const json& vsock = fields.at("vsock");
  if (!vsock.is_null()) {
    const Fields entry = fields.nested(vsock, fields.child("vsock"));
    machine.vsock = VsockConfig{entry.number<uint32_t>("guest_cid"), entry.string("uds_path")};
  }
}

}  // namespace

const char* vmm_build_version() {
  return VMM_LIBRARY_VERSION;
}

std::string manifest_to_json(const SnapshotManifest& manifest) {
  json cpuid = json::array();
  for (const kvm_cpuid_entry2& e : manifest.cpuid) {
    cpuid.push_back({{"function", e.function},
                     {"index", e.index},
                     {"flags", e.flags},
                     {"eax", e.eax},
                     {"ebx", e.ebx},
                     {"ecx", e.ecx},
                     {"edx", e.edx}});
  }
  const json document{
      {"format", SnapshotManifest::kFormat},
      {"vmm_version", manifest.vmm_version},
      {"created_unix_ns", manifest.created_unix_ns},
      {"cpu",
       {{"vendor", manifest.cpu.vendor},
        {"family", manifest.cpu.family},
        {"model", manifest.cpu.model}}},
      {"cpuid", std::move(cpuid)},
      {"machine", machine_to_json(manifest)},
      {"memory",
       {{"file", SnapshotManifest::kMemoryFileName}, {"bytes", manifest.memory_file_bytes}}},
      {"state",
       {{"file", SnapshotManifest::kStateFileName},
        {"bytes", manifest.state_file_bytes},
        {"fnv1a64", fmt::format("{:016x}", manifest.state_checksum)}}}};
  return document.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

SnapshotManifest parse_manifest(std::string_view text, const std::string& what) {
  const json document = json::parse(text.begin(), text.end(), nullptr, false);
  if (document.is_discarded()) fail("{}: not JSON (a corrupt manifest)", what);
  const Fields top(document, "", what);
  const auto format = top.number<uint32_t>("format");
  if (format != SnapshotManifest::kFormat) {
    fail("{}: snapshot format {} (this vmm restores format {})", what, format,
         SnapshotManifest::kFormat);
  }
  SnapshotManifest manifest;
  manifest.vmm_version = top.string("vmm_version");
  manifest.created_unix_ns = top.number<int64_t>("created_unix_ns");
  const Fields cpu = top.nested(top.at("cpu"), "cpu");
  manifest.cpu = {cpu.string("vendor"), cpu.number<uint32_t>("family"),
                  cpu.number<uint32_t>("model")};
  const json& cpuid = top.array("cpuid", kMaxCpuidEntries);
  for (size_t i = 0; i < cpuid.size(); ++i) {
    const Fields entry = top.nested(cpuid[i], top.child("cpuid", i));
    kvm_cpuid_entry2 e{};
    e.function = entry.number<uint32_t>("function");
    e.index = entry.number<uint32_t>("index");
    e.flags = entry.number<uint32_t>("flags");
    e.eax = entry.number<uint32_t>("eax");
    e.ebx = entry.number<uint32_t>("ebx");
    e.ecx = entry.number<uint32_t>("ecx");
    e.edx = entry.number<uint32_t>("edx");
    manifest.cpuid.push_back(e);
  }
  parse_machine(top.nested(top.at("machine"), "machine"), manifest);
  const Fields memory = top.nested(top.at("memory"), "memory");
  manifest.memory_file_bytes = memory.number<uint64_t>("bytes");
  if (memory.string("file") != SnapshotManifest::kMemoryFileName) {
    memory.bad("file", "is not \"memory\"");
  }
  if (manifest.memory_file_bytes != manifest.machine.memory_bytes) {
    memory.bad("bytes", "differs from machine.memory_bytes");
  }
  const Fields state = top.nested(top.at("state"), "state");
  if (state.string("file") != SnapshotManifest::kStateFileName)
    state.bad("file", "is not \"state\"");
  manifest.state_file_bytes = state.number<uint64_t>("bytes");
  // from_chars, not stoull: that one takes a sign, spaces and "0x" too.
  const std::string checksum = state.string("fnv1a64");
  const char* const end = checksum.data() + checksum.size();
  const auto [parsed_to, error] =
      std::from_chars(checksum.data(), end, manifest.state_checksum, 16);
  if (checksum.size() != 16 || error != std::errc() || parsed_to != end)
    state.bad("fnv1a64", "is not 16 hex digits");
  return manifest;
}

void check_restorable(const SnapshotManifest& manifest, std::string_view vmm_version,
                      const kvm::CpuIdentity& host, const std::string& what) {
  if (manifest.vmm_version != vmm_version) {
    fail(
        "{}: the snapshot was made by vmm {}; this is vmm {} (a snapshot restores only into the "
        "vmm that made it)",
        what, manifest.vmm_version, vmm_version);
  }
  if (manifest.cpu.vendor != host.vendor) {
    fail("{}: the snapshot was made on an {} CPU; this host's is {}", what, manifest.cpu.vendor,
         host.vendor);
  }
  if (manifest.cpu.family != host.family || manifest.cpu.model != host.model) {
    fail(
        "{}: the snapshot was made on CPU family {:#x} model {:#x}; this host's is family {:#x} "
        "model {:#x}",
        what, manifest.cpu.family, manifest.cpu.model, host.family, host.model);
  }
}

}  // namespace vmm
