#include "boot/elf.hpp"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {

namespace {

// A vmlinux has a handful of program headers; anything near this is not a kernel.
constexpr uint16_t kMaxProgramHeaders = 128;
constexpr uint32_t kXenElfnotePhys32Entry = 18;

// [offset, offset + size) lies inside a buffer of `total` bytes, without overflowing.
bool in_bounds(uint64_t offset, uint64_t size, uint64_t total) {
  return size <= total && offset <= total - size;
}

template <typename T>
T read_at(std::span<const uint8_t> bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// Looks for the PVH entry note in one note area. Malformed notes are an error, not a miss.
std::optional<uint32_t> find_pvh_note(std::span<const uint8_t> notes, const std::string& name) {
  uint64_t pos = 0;
  while (notes.size() - pos >= sizeof(Elf64_Nhdr)) {
    const auto note = read_at<Elf64_Nhdr>(notes, pos);
    const uint64_t name_at = pos + sizeof(Elf64_Nhdr);
    const uint64_t desc_at = name_at + align_up(note.n_namesz, 4);
    if (!in_bounds(name_at, note.n_namesz, notes.size()) ||
        !in_bounds(desc_at, note.n_descsz, notes.size())) {
      fail("{}: malformed ELF note (runs past its section)", name);
    }
    static constexpr char kXen[] = "Xen";
    if (note.n_type == kXenElfnotePhys32Entry && note.n_namesz == sizeof(kXen) &&
        std::memcmp(notes.data() + name_at, kXen, sizeof(kXen)) == 0) {
      // Linux emits the address as a pointer-sized value: 8 bytes on x86-64.
      uint64_t entry;
      if (note.n_descsz == 4) {
        entry = read_at<uint32_t>(notes, desc_at);
      } else if (note.n_descsz == 8) {
        entry = read_at<uint64_t>(notes, desc_at);
      } else {
        fail("{}: malformed PVH entry note ({} byte address)", name, note.n_descsz);
      }
      if (entry > std::numeric_limits<uint32_t>::max()) {
        fail("{}: PVH entry point {:#x} is above 4 GiB", name, entry);
      }
      return static_cast<uint32_t>(entry);
    }
    pos = std::min<uint64_t>(desc_at + align_up(note.n_descsz, 4), notes.size());
  }
  return std::nullopt;
}

std::optional<uint32_t> pvh_from_sections(std::span<const uint8_t> image, const Elf64_Ehdr& ehdr,
                                          const std::string& name) {
  if (ehdr.e_shnum == 0) return std::nullopt;
  if (ehdr.e_shentsize != sizeof(Elf64_Shdr) ||
      !in_bounds(ehdr.e_shoff, uint64_t{ehdr.e_shnum} * sizeof(Elf64_Shdr), image.size())) {
    fail("{}: malformed ELF section headers", name);
  }
  for (uint16_t i = 0; i < ehdr.e_shnum; ++i) {
    const auto shdr = read_at<Elf64_Shdr>(image, ehdr.e_shoff + uint64_t{i} * sizeof(Elf64_Shdr));
    if (shdr.sh_type != SHT_NOTE) continue;
    if (!in_bounds(shdr.sh_offset, shdr.sh_size, image.size())) {
      fail("{}: ELF note section {} lies outside the file", name, i);
    }
    if (auto entry = find_pvh_note(image.subspan(shdr.sh_offset, shdr.sh_size), name)) {
      return entry;
    }
  }
  return std::nullopt;
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

ElfKernel parse_elf(std::span<const uint8_t> image, const std::string& name) {
  if (!looks_like_elf(image)) fail("{}: not an ELF file (bad magic)", name);
  if (image.size() < sizeof(Elf64_Ehdr)) {
    fail("{}: truncated ELF header ({} bytes)", name, image.size());
  }
  const auto ehdr = read_at<Elf64_Ehdr>(image, 0);
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64) fail("{}: not a 64-bit ELF file", name);
  if (ehdr.e_ident[EI_DATA] != ELFDATA2LSB) fail("{}: not a little-endian ELF file", name);
  if (ehdr.e_machine != EM_X86_64) {
    fail("{}: ELF machine {} is not x86-64", name, ehdr.e_machine);
  }
  if (ehdr.e_type != ET_EXEC) fail("{}: ELF type {} is not an executable", name, ehdr.e_type);
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr)) {
    fail("{}: ELF program header size {} (expected {})", name, ehdr.e_phentsize,
         sizeof(Elf64_Phdr));
  }
  if (ehdr.e_phnum == 0 || ehdr.e_phnum > kMaxProgramHeaders) {
    fail("{}: {} ELF program headers (expected 1 to {})", name, ehdr.e_phnum, kMaxProgramHeaders);
  }
  if (!in_bounds(ehdr.e_phoff, uint64_t{ehdr.e_phnum} * sizeof(Elf64_Phdr), image.size())) {
    fail("{}: ELF program headers lie outside the file", name);
  }

  ElfKernel kernel;
  kernel.start = std::numeric_limits<uint64_t>::max();
  std::optional<uint64_t> entry;
  std::vector<uint64_t> vaddrs;  // parallel to kernel.segments
  for (uint16_t i = 0; i < ehdr.e_phnum; ++i) {
    const auto phdr = read_at<Elf64_Phdr>(image, ehdr.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (!in_bounds(phdr.p_offset, phdr.p_filesz, image.size())) {
      fail("{}: ELF segment {} (offset {:#x}, {} bytes) lies outside the file", name, i,
           phdr.p_offset, phdr.p_filesz);
    }
    const auto data = image.subspan(phdr.p_offset, phdr.p_filesz);
    if (phdr.p_type == PT_NOTE && !kernel.pvh_entry) {
      kernel.pvh_entry = find_pvh_note(data, name);
    }
    if (phdr.p_type != PT_LOAD) continue;
    if (phdr.p_memsz < phdr.p_filesz) {
      fail("{}: ELF segment {} is smaller in memory ({}) than in the file ({})", name, i,
           phdr.p_memsz, phdr.p_filesz);
    }
    if (phdr.p_paddr + phdr.p_memsz < phdr.p_paddr || phdr.p_vaddr + phdr.p_memsz < phdr.p_vaddr) {
      fail("{}: ELF segment {} wraps around the address space", name, i);
    }
    kernel.segments.push_back({phdr.p_paddr, phdr.p_memsz, data});
    kernel.start = std::min(kernel.start, phdr.p_paddr);
    kernel.end = std::max(kernel.end, phdr.p_paddr + phdr.p_memsz);
    vaddrs.push_back(phdr.p_vaddr);
  }
  if (kernel.segments.empty()) fail("{}: ELF file has no loadable segments", name);
  // e_entry is physical in Linux's vmlinux (phys_startup_64) and virtual in other links. Try
  // physical first: vmlinux's per-cpu segment sits at virtual 0 and would capture low addresses.
  for (const auto& segment : kernel.segments) {
    if (!entry && ehdr.e_entry >= segment.paddr && ehdr.e_entry - segment.paddr < segment.memsz) {
      entry = ehdr.e_entry;
    }
  }
  for (size_t i = 0; i < kernel.segments.size() && !entry; ++i) {
    const auto& segment = kernel.segments[i];
    if (ehdr.e_entry >= vaddrs[i] && ehdr.e_entry - vaddrs[i] < segment.memsz) {
      entry = ehdr.e_entry - vaddrs[i] + segment.paddr;
    }
  }
  if (!entry) {
    fail("{}: ELF entry point {:#x} is not in any loadable segment", name, ehdr.e_entry);
  }
  kernel.entry64 = *entry;
  if (!kernel.pvh_entry) kernel.pvh_entry = pvh_from_sections(image, ehdr, name);
  return kernel;
}

void load_elf(const GuestMemory& memory, const ElfKernel& kernel, const std::string& name) {
  for (const auto& segment : kernel.segments) {
    auto target = memory.slice(segment.paddr, segment.memsz);
    if (segment.paddr < layout::kHighMemStart || !target) {
      fail("{}: ELF segment at {:#x} ({} bytes) is outside guest RAM above 1 MiB", name,
           segment.paddr, segment.memsz);
    }
    std::memcpy(target->data(), segment.data.data(), segment.data.size());
    std::memset(target->data() + segment.data.size(), 0, segment.memsz - segment.data.size());
  }
}

}  // namespace vmm::boot
