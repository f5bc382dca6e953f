#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace vmm {

// An anonymous private host mapping, unmapped on destruction. Never executable on the host.
class MemoryMapping {
 public:
  static MemoryMapping anonymous(uint64_t size);
  MemoryMapping(const MemoryMapping&) = delete;
  MemoryMapping& operator=(const MemoryMapping&) = delete;
  MemoryMapping(MemoryMapping&& other) noexcept;
  MemoryMapping& operator=(MemoryMapping&& other) noexcept;
  ~MemoryMapping();

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MemoryMapping(uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// The only door to guest RAM. Every access names a guest-physical address and a length; both come
// from the guest (or a file) and are untrusted, so each access is checked against the regions,
// overflow-safe, before a byte moves. An access must lie inside one region.
class GuestMemory {
 public:
  struct Region {
    uint64_t guest_base;
    uint64_t size;
    uint8_t* host;
  };

  // RAM of `ram_size` bytes laid out around the 32-bit MMIO hole (see layout.hpp).
  static GuestMemory allocate(uint64_t ram_size);
  // Wraps caller-owned buffers (tests and fuzzers). Regions must not overlap.
  static GuestMemory from_regions(std::vector<Region> regions);

  GuestMemory(GuestMemory&&) noexcept = default;
  GuestMemory& operator=(GuestMemory&&) noexcept = default;

  // The host bytes behind [gpa, gpa+len), or nullopt if any of it is outside RAM.
  std::optional<std::span<uint8_t>> slice(uint64_t gpa, uint64_t len) const noexcept;
  bool contains(uint64_t gpa, uint64_t len) const noexcept { return slice(gpa, len).has_value(); }

  bool read(uint64_t gpa, std::span<uint8_t> out) const noexcept;
  bool write(uint64_t gpa, std::span<const uint8_t> in) const noexcept;

  template <typename T>
  std::optional<T> read_obj(uint64_t gpa) const noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    auto bytes = slice(gpa, sizeof(T));
    if (!bytes) return std::nullopt;
    T value;
    std::memcpy(&value, bytes->data(), sizeof(T));
    return value;
  }

  template <typename T>
  bool write_obj(uint64_t gpa, const T& value) const noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    auto bytes = slice(gpa, sizeof(T));
    if (!bytes) return false;
    std::memcpy(bytes->data(), &value, sizeof(T));
    return true;
  }

  // Throwing variant for setup code (loaders, firmware): `what` names the payload in the error.
  void write_or_throw(uint64_t gpa, std::span<const uint8_t> in, const std::string& what) const;

  const std::vector<Region>& regions() const { return regions_; }
  // Total RAM in bytes.
  uint64_t ram_size() const;
  // End of the RAM region that starts at guest address 0 (the usable 32-bit RAM).
  uint64_t low_ram_end() const;

 private:
  explicit GuestMemory(std::vector<Region> regions) : regions_(std::move(regions)) {}
  std::vector<Region> regions_;
  std::vector<MemoryMapping> mappings_;
};

}  // namespace vmm
