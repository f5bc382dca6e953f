#include "base/util/state_archive.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "base/util/error.hpp"

namespace vmm {

namespace {
constexpr std::array<uint8_t, 8> kMagic = {'V', 'M', 'M', 'S', 'T', 'A', 'T', 'E'};
constexpr size_t kMaxNameBytes = 256;
}  // namespace

uint64_t fnv1a64(std::span<const uint8_t> bytes, uint64_t hash) {
  for (const uint8_t byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

void StateArchive::add(const std::string& name, std::vector<uint8_t> bytes) {
  if (!sections_.emplace(name, std::move(bytes)).second) fail("state section {} saved twice", name);
}

std::vector<uint8_t> StateArchive::serialize() const {
  StateWriter out;
  for (const uint8_t byte : kMagic) out.put(byte);
  out.put<uint32_t>(kFormatVersion);
  out.put<uint32_t>(static_cast<uint32_t>(sections_.size()));
  for (const auto& [name, bytes] : sections_) {
    out.put_string(name);
    out.put_bytes(bytes);
  }
  std::vector<uint8_t> bytes = out.take();
  const uint64_t checksum = fnv1a64(bytes);
  const auto* p = reinterpret_cast<const uint8_t*>(&checksum);
  bytes.insert(bytes.end(), p, p + sizeof(checksum));
  return bytes;
}

StateArchive StateArchive::parse(std::span<const uint8_t> bytes, const std::string& what) {
  if (bytes.size() < kMagic.size() + sizeof(uint64_t) ||
      !std::equal(kMagic.begin(), kMagic.end(), bytes.begin())) {
    fail("{}: not a vmm state file", what);
  }
  const std::span<const uint8_t> body = bytes.first(bytes.size() - sizeof(uint64_t));
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + body.size(), sizeof(stored));
  if (fnv1a64(body) != stored) fail("{}: checksum mismatch (the file is corrupt)", what);

  StateReader in(body.subspan(kMagic.size()), what);
  const auto version = in.get<uint32_t>();
  if (version != kFormatVersion) {
    fail("{}: state format {} (this vmm reads format {})", what, version, kFormatVersion);
  }
  const auto count = in.get_at_most<uint32_t>(kMaxSections, "the section count");
  StateArchive archive;
  archive.what_ = what;
  for (uint32_t i = 0; i < count; ++i) {
    std::string name = in.get_string(kMaxNameBytes);
    std::vector<uint8_t> section = in.get_bytes(kMaxSectionBytes);
    if (!archive.sections_.emplace(std::move(name), std::move(section)).second) {
      in.corrupt("a section appears twice");
    }
  }
  in.expect_end();
  return archive;
}

StateReader StateArchive::reader(const std::string& name) const {
  const auto it = sections_.find(name);
  if (it == sections_.end()) fail("{}: no saved state for {}", what_, name);
  return StateReader(it->second, name);
}

}  // namespace vmm
