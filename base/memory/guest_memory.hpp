#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "base/util/unique_fd.hpp"

namespace vmm {

// A host mapping of guest RAM, on a 2 MiB boundary, unmapped on destruction. Never executable on
// the host.
class MemoryMapping {
 public:
  // kShared: the RAM's own memfd, whose pages others (a vhost-user backend) may map too.
  // kPrivate: a copy-on-write view of a snapshot's memory file, which the guest never changes.
  // kAnonymous: private anonymous memory (`fd` and `file_offset` unused).
  enum class Sharing { kShared, kPrivate, kAnonymous };
  static MemoryMapping of_file(int fd, uint64_t file_offset, uint64_t size, Sharing sharing);
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
    // Where the region lies in the memory file's layout (the regions in guest-address order, back
    // to back): in fd() when there is one, and in the file save() writes.
    uint64_t file_offset = 0;
  };

  // What fresh RAM is. A memfd can be mapped by another process too, but gets huge pages only
  // where the host's /sys/kernel/mm/transparent_hugepage/shmem_enabled allows them (Debian's
  // default, "never", does not); anonymous memory gets them wherever THP is on. 4 KiB pages cost
  // a nested page fault each where a huge page takes one per 2 MiB: measured in the lab, a memfd
  // without them made a boot 1.33 times as long.
  enum class Backing {
    kAuto,       // a memfd where the host gives shmem huge pages, else anonymous memory
    kMemfd,      // always a memfd (what must be shared with another process)
    kAnonymous,  // never a memfd
  };
  // RAM of `ram_size` bytes laid out around the 32-bit MMIO hole (see layout.hpp): one memfd
  // (fd()) mapped shared, or anonymous memory (fd() is -1), as `backing` says.
  static GuestMemory allocate(uint64_t ram_size, Backing backing = Backing::kAuto);
  // Whether this host gives a memfd transparent huge pages on MADV_HUGEPAGE.
  static bool host_has_shmem_huge_pages();
  // A restored guest's RAM: each region mapped copy-on-write from the memory file at `path` (as
  // save() wrote it), which must be exactly `ram_size` bytes. Nothing is read up front, and guests
  // restored from one file share its unmodified pages through the page cache; the file must stay
  // unchanged while they run. fd() is -1.
  static GuestMemory map_file(const std::string& path, uint64_t ram_size);
  // Wraps caller-owned buffers (tests and fuzzers). Regions must not overlap; their file offsets
  // are set to the memory file's layout.
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

  // Writes the RAM to `out_fd`, a regular file, in the memory file's layout (its size is the RAM
  // size), sparse: a page the guest never wrote, or that is all zeros, is a hole. `what` names the
  // file in errors. The guest must not run meanwhile.
  void save(int out_fd, const std::string& what) const;

  const std::vector<Region>& regions() const { return regions_; }
  // The memfd the RAM is mapped from (see Region::file_offset), or -1 when there is none.
  int fd() const { return memfd_.get(); }
  // Total RAM in bytes.
  uint64_t ram_size() const;
  // End of the RAM region that starts at guest address 0 (the usable 32-bit RAM).
  uint64_t low_ram_end() const;

 private:
  explicit GuestMemory(std::vector<Region> regions) : regions_(std::move(regions)) {}
  // The regions of `ram_size` bytes of RAM, each mapped from `fd` at its file offset.
  static GuestMemory map_layout(int fd, uint64_t ram_size, MemoryMapping::Sharing sharing);

  std::vector<Region> regions_;
  std::vector<MemoryMapping> mappings_;
  UniqueFd memfd_;
};

}  // namespace vmm
