#include "base/memory/guest_memory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <utility>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"

namespace vmm {

MemoryMapping MemoryMapping::anonymous(uint64_t size) {
  // Guest RAM is placed on a 2 MiB boundary and offered for transparent huge pages: KVM can then
  // map the guest with 2 MiB pages, which takes one nested page fault where 4 KiB pages take 512
  // (QEMU aligns its RAM the same way). Reserve extra, then trim to the aligned part.
  constexpr uint64_t kHugePage = uint64_t{2} << 20;
  const uint64_t reserve = size + kHugePage;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    throw_errno(fmt::format("cannot map {} MiB of guest memory", size >> 20));
  }
  auto* base = static_cast<uint8_t*>(p);
  const uint64_t lead = (kHugePage - reinterpret_cast<uintptr_t>(base) % kHugePage) % kHugePage;
  uint8_t* data = base + lead;
  if (lead > 0) ::munmap(base, lead);
  if (reserve - lead > size) ::munmap(data + size, reserve - lead - size);
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

GuestMemory GuestMemory::allocate(uint64_t ram_size) {
  if (ram_size == 0 || ram_size % 4096 != 0) {
    fail("guest memory size {} is not a positive multiple of 4 KiB", ram_size);
  }
  std::vector<MemoryMapping> mappings;
  std::vector<Region> regions;
  const uint64_t low = std::min(ram_size, layout::kMmioHoleStart);
  mappings.push_back(MemoryMapping::anonymous(low));
  regions.push_back({0, low, mappings.back().data()});
  if (ram_size > low) {
    const uint64_t high = ram_size - low;
    mappings.push_back(MemoryMapping::anonymous(high));
    regions.push_back({layout::kHighRamStart, high, mappings.back().data()});
  }
  GuestMemory memory(std::move(regions));
  memory.mappings_ = std::move(mappings);
  return memory;
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
