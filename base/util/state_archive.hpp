#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/util/state_stream.hpp"

namespace vmm {

// Named state blobs (one per vCPU, the VM, each device) in one file: the magic "VMMSTATE", a
// format version, the sections (name, bytes) and an FNV-1a checksum of all that, so a corrupt or
// truncated file is refused before any of it is used.
class StateArchive {
 public:
  static constexpr uint32_t kFormatVersion = 1;
  // Limits for parsing an untrusted file.
  static constexpr size_t kMaxSections = 4096;
  static constexpr size_t kMaxSectionBytes = size_t{16} << 20;

  // Throws if `name` is already there.
  void add(const std::string& name, std::vector<uint8_t> bytes);
  std::vector<uint8_t> serialize() const;
  // `what` names the file in errors. Throws vmm::Error on a bad magic, version or checksum, a
  // truncated file or a duplicate section.
  static StateArchive parse(std::span<const uint8_t> bytes, const std::string& what);

  bool contains(std::string_view name) const { return sections_.find(name) != sections_.end(); }
  // A reader over section `name`, named after it in errors; throws if there is none.
  StateReader reader(const std::string& name) const;
  size_t size() const { return sections_.size(); }

 private:
  std::map<std::string, std::vector<uint8_t>, std::less<>> sections_;
  std::string what_ = "state";
};

// FNV-1a, 64 bits: a checksum against corruption, not an adversary.
uint64_t fnv1a64(std::span<const uint8_t> bytes, uint64_t hash = 0xcbf29ce484222325ull);

}  // namespace vmm
