#include "base/memory/guest_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <utility>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

namespace vmm {
namespace {

constexpr uint64_t kPageSize = 4096;
// x86-64 guest-physical addresses have at most 52 bits; RAM (which resumes above the MMIO hole)
// must end below that. This also keeps every file offset a valid off_t.
constexpr uint64_t kMaxRamSize =
    (uint64_t{1} << 52) - (layout::kHighRamStart - layout::kMmioHoleStart);

void check_ram_size(uint64_t ram_size, const std::string& what) {
  if (ram_size == 0 || ram_size % kPageSize != 0) {
    fail("{} {} is not a positive multiple of 4 KiB", what, ram_size);
  }
  if (ram_size > kMaxRamSize) {
    fail("{} {} is more than a guest can address ({})", what, ram_size, kMaxRamSize);
  }
}

// The size of `fd`, which must be a regular file.
uint64_t regular_file_size(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(what);
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", what);
  return static_cast<uint64_t>(st.st_size);
}

bool all_zero(const uint8_t* bytes, uint64_t len) {
  return bytes[0] == 0 && std::memcmp(bytes, bytes + 1, len - 1) == 0;
}

void pwrite_all(int fd, const uint8_t* bytes, uint64_t len, uint64_t offset,
                const std::string& what) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, bytes, len, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(what);
    if (n == 0) fail("{}: wrote nothing at offset {}", what, offset);
    bytes += n;
    len -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

// Writes the pages of host [bytes, bytes+len) that are not all zeros to `fd` at `offset`, each run
// of them in one write, and leaves the zero ones as the holes they already are in the file.
void write_nonzero_pages(int fd, const uint8_t* bytes, uint64_t len, uint64_t offset,
                         const std::string& what) {
  uint64_t run_start = 0;
  bool in_run = false;
  for (uint64_t page = 0; page < len; page += kPageSize) {
    if (!all_zero(bytes + page, std::min(kPageSize, len - page))) {
      if (!in_run) run_start = page;
      in_run = true;
    } else if (in_run) {
      pwrite_all(fd, bytes + run_start, page - run_start, offset + run_start, what);
      in_run = false;
    }
  }
  if (in_run) pwrite_all(fd, bytes + run_start, len - run_start, offset + run_start, what);
}

// Calls visit(begin, end) for each range of [begin, end) in `memfd` that holds pages: the ones
// the guest (or a loader) ever wrote, or read through the mapping. Moves the memfd's file position,
// which nothing uses (the RAM is only ever mapped).
template <typename Visit>
void for_each_data_range(int memfd, uint64_t begin, uint64_t end, const std::string& what,
                         Visit&& visit) {
  uint64_t position = begin;
  while (position < end) {
    const off_t data = ::lseek(memfd, static_cast<off_t>(position), SEEK_DATA);
    if (data < 0 && errno == ENXIO) return;  // no data after `position`
    if (data < 0) throw_errno(what + ": cannot find the written guest RAM (SEEK_DATA)");
    if (static_cast<uint64_t>(data) >= end) return;
    const off_t hole = ::lseek(memfd, data, SEEK_HOLE);
    if (hole < 0) throw_errno(what + ": cannot find the written guest RAM (SEEK_HOLE)");
    position = std::min(static_cast<uint64_t>(hole), end);
    visit(static_cast<uint64_t>(data), position);
  }
}

}  // namespace

MemoryMapping MemoryMapping::of_file(int fd, uint64_t file_offset, uint64_t size, Sharing sharing) {
  // Guest RAM is placed on a 2 MiB boundary and offered for transparent huge pages: KVM can then
  // map the guest with 2 MiB pages, which takes one nested page fault where 4 KiB pages take 512
  // (QEMU aligns its RAM the same way). Reserve extra address space (inaccessible, no memory),
  // place the file's mapping at the aligned address inside it, then trim the rest.
  constexpr uint64_t kHugePage = uint64_t{2} << 20;
  const uint64_t reserve = size + kHugePage;
  void* p = ::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw_errno(fmt::format("cannot reserve {} MiB of address space for guest memory", size >> 20));
  }
  auto* base = static_cast<uint8_t*>(p);
  const uint64_t lead = (kHugePage - reinterpret_cast<uintptr_t>(base) % kHugePage) % kHugePage;
  uint8_t* data = base + lead;
  int flags = (sharing == Sharing::kShared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | MAP_NORESERVE;
  if (sharing == Sharing::kAnonymous) {
    flags |= MAP_ANONYMOUS;
    fd = -1;
    file_offset = 0;
  }
  if (::mmap(data, size, PROT_READ | PROT_WRITE, flags, fd, static_cast<off_t>(file_offset)) ==
      MAP_FAILED) {
    const int err = errno;
    ::munmap(base, reserve);
    throw Error(errno_message(fmt::format("cannot map {} MiB of guest memory", size >> 20), err));
  }
  if (lead > 0) ::munmap(base, lead);
  if (reserve - lead > size) ::munmap(data + size, reserve - lead - size);
  // On the memfd this is shmem THP, which the host grants where
  // /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise" (or "always", "within_size");
  // on a memory file it is for the guest's copy-on-write pages.
  ::madvise(data, size, MADV_HUGEPAGE);
  // Guest RAM is never part of a host core dump.
  ::madvise(data, size, MADV_DONTDUMP);
  return MemoryMapping(data, size);
}

MemoryMapping::MemoryMapping(MemoryMapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MemoryMapping& MemoryMapping::operator=(MemoryMapping&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MemoryMapping::~MemoryMapping() {
  if (data_) ::munmap(data_, size_);
}

GuestMemory GuestMemory::map_layout(int fd, uint64_t ram_size, MemoryMapping::Sharing sharing) {
  std::vector<MemoryMapping> mappings;
  std::vector<Region> regions;
  uint64_t file_offset = 0;
  auto add_region = [&](uint64_t guest_base, uint64_t size) {
    mappings.push_back(MemoryMapping::of_file(fd, file_offset, size, sharing));
    regions.push_back({guest_base, size, mappings.back().data(), file_offset});
    file_offset += size;
  };
  const uint64_t low = std::min(ram_size, layout::kMmioHoleStart);
  add_region(0, low);
  if (ram_size > low) add_region(layout::kHighRamStart, ram_size - low);
  GuestMemory memory(std::move(regions));
  memory.mappings_ = std::move(mappings);
  return memory;
}

bool GuestMemory::host_has_shmem_huge_pages() {
  // "always within_size advise [never] deny force": the bracketed one is in force.
  std::ifstream file("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string line;
  if (!std::getline(file, line)) return false;
  const size_t open = line.find('[');
  const size_t close = line.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return false;
  const std::string mode = line.substr(open + 1, close - open - 1);
  return mode == "always" || mode == "within_size" || mode == "advise" || mode == "force";
}

GuestMemory GuestMemory::allocate(uint64_t ram_size, Backing backing) {
  check_ram_size(ram_size, "guest memory size");
  if (backing == Backing::kAnonymous ||
      (backing == Backing::kAuto && !host_has_shmem_huge_pages())) {
    return map_layout(-1, ram_size, MemoryMapping::Sharing::kAnonymous);
  }
  UniqueFd memfd(::memfd_create("vmm-guest-ram", MFD_CLOEXEC));
  if (!memfd) throw_errno("cannot create the guest RAM's memfd");
  // A memfd's size reserves nothing: a page takes memory once the guest touches it.
  if (::ftruncate(memfd.get(), static_cast<off_t>(ram_size)) != 0) {
    throw_errno(fmt::format("cannot size the guest RAM's memfd to {} MiB", ram_size >> 20));
  }
  GuestMemory memory = map_layout(memfd.get(), ram_size, MemoryMapping::Sharing::kShared);
  memory.memfd_ = std::move(memfd);
  return memory;
}

GuestMemory GuestMemory::map_file(const std::string& path, uint64_t ram_size) {
  check_ram_size(ram_size, path + ": the snapshot's RAM size");
  const UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) throw_errno(path);
  const uint64_t file_size = regular_file_size(file.get(), path);
  if (file_size < ram_size) {
    fail("{}: truncated memory file ({} bytes, the snapshot's RAM is {})", path, file_size,
         ram_size);
  }
  if (file_size > ram_size) {
    fail("{}: memory file of {} bytes, more than the snapshot's RAM ({})", path, file_size,
         ram_size);
  }
  // The mappings keep the file open; its descriptor is not needed after this.
  return map_layout(file.get(), ram_size, MemoryMapping::Sharing::kPrivate);
}

GuestMemory GuestMemory::from_regions(std::vector<Region> regions) {
  std::sort(regions.begin(), regions.end(),
            [](const Region& a, const Region& b) { return a.guest_base < b.guest_base; });
  for (size_t i = 0; i < regions.size(); ++i) {
    if (regions[i].size == 0 || regions[i].guest_base + regions[i].size < regions[i].guest_base) {
      fail("guest memory region at {:#x} is empty or wraps", regions[i].guest_base);
    }
    if (i > 0 && regions[i - 1].guest_base + regions[i - 1].size > regions[i].guest_base) {
      fail("guest memory regions at {:#x} and {:#x} overlap", regions[i - 1].guest_base,
           regions[i].guest_base);
    }
  }
  uint64_t file_offset = 0;
  for (Region& region : regions) {
    region.file_offset = file_offset;
    file_offset += region.size;
  }
  return GuestMemory(std::move(regions));
}

std::optional<std::span<uint8_t>> GuestMemory::slice(uint64_t gpa, uint64_t len) const noexcept {
  for (const Region& r : regions_) {
    if (gpa < r.guest_base) continue;
    const uint64_t offset = gpa - r.guest_base;
    // offset < size and len <= size - offset: no addition that could overflow.
    if (offset >= r.size) continue;
    if (len > r.size - offset) return std::nullopt;
    return std::span<uint8_t>(r.host + offset, static_cast<size_t>(len));
  }
  return std::nullopt;
}

bool GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const noexcept {
  auto bytes = slice(gpa, out.size());
  if (!bytes) return false;
  std::memcpy(out.data(), bytes->data(), out.size());
  return true;
}

bool GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) const noexcept {
  auto bytes = slice(gpa, in.size());
  if (!bytes) return false;
  std::memcpy(bytes->data(), in.data(), in.size());
  return true;
}

void GuestMemory::write_or_throw(uint64_t gpa, std::span<const uint8_t> in,
                                 const std::string& what) const {
  if (!write(gpa, in)) {
    fail("{} ({} bytes at {:#x}) does not fit in guest memory", what, in.size(), gpa);
  }
}

void GuestMemory::save(int out_fd, const std::string& what) const {
  regular_file_size(out_fd, what);  // only a regular file has holes
  // Emptied first, so that every byte not written below is a hole and reads as zero.
  if (::ftruncate(out_fd, 0) != 0 || ::ftruncate(out_fd, static_cast<off_t>(ram_size())) != 0) {
    throw_errno(what);
  }
  for (const Region& region : regions_) {
    if (!memfd_) {
      // No memfd to ask which pages were written (a restored guest's or a caller's buffers).
      write_nonzero_pages(out_fd, region.host, region.size, region.file_offset, what);
      continue;
    }
    // Only the memfd's data ranges are read: reading a hole through the mapping would allocate
    // a page of shmem for it.
    for_each_data_range(memfd_.get(), region.file_offset, region.file_offset + region.size, what,
                        [&](uint64_t begin, uint64_t end) {
                          write_nonzero_pages(out_fd, region.host + (begin - region.file_offset),
                                              end - begin, begin, what);
                        });
  }
}

uint64_t GuestMemory::ram_size() const {
  uint64_t total = 0;
  for (const Region& r : regions_) total += r.size;
  return total;
}

uint64_t GuestMemory::low_ram_end() const {
  for (const Region& r : regions_) {
    if (r.guest_base == 0) return r.size;
  }
  return 0;
}

}  // namespace vmm
