#pragma once

// Synthetic kernels for the boot unit tests: just enough of a bzImage or ELF vmlinux for the
// parsers, with every field a test may want to break reachable.

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "boot/setup_header.hpp"

namespace vmm::boot::test_images {

// Copies a (possibly misaligned) field of a packed struct: gtest's assertions bind their
// arguments to references, which packed fields cannot safely back.
template <typename T>
T value(T v) {
  return v;
}

// Runs `f` and returns the message of the vmm::Error it throws ("" when it does not throw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline constexpr size_t kTestSetupSects = 4;
inline constexpr size_t kTestSetupSize = (kTestSetupSects + 1) * kSectorSize;

// A relocatable protocol-2.15 bzImage preferring 16 MiB, with `payload_size` bytes of payload
// (a recognizable pattern) after the setup sectors.
inline std::vector<uint8_t> make_bzimage(size_t payload_size = 8192,
                                         uint32_t init_size = 32 << 20) {
  std::vector<uint8_t> image(kTestSetupSize + payload_size);
  SetupHeader hdr{};
  hdr.setup_sects = kTestSetupSects;
  hdr.boot_flag = kBootFlag;
  hdr.jump = 0x6aeb;  // jmp short to 0x26c: the header ends after kernel_info_offset
  hdr.header = kHdrSMagic;
  hdr.version = 0x020f;
  hdr.loadflags = kLoadedHigh;
  hdr.initrd_addr_max = 0x7fffffff;
  hdr.kernel_alignment = 2 << 20;
  hdr.relocatable_kernel = 1;
  hdr.xloadflags = kXlfKernel64 | 2 /* XLF_CAN_BE_LOADED_ABOVE_4G */;
  hdr.cmdline_size = 2047;
  hdr.pref_address = 16 << 20;
  hdr.init_size = init_size;
  hdr.syssize = static_cast<uint32_t>((payload_size + 15) / 16);
  std::memcpy(image.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
  for (size_t i = 0; i < payload_size; ++i) image[kTestSetupSize + i] = static_cast<uint8_t>(i * 7);
  return image;
}

// Edits the header of an image made by make_bzimage.
template <typename F>
void edit_header(std::vector<uint8_t>& image, F&& edit) {
  SetupHeader hdr;
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset, sizeof(hdr));
  edit(hdr);
  std::memcpy(image.data() + kSetupHeaderOffset, &hdr, sizeof(hdr));
}

struct TestSegment {
  uint64_t vaddr;
  uint64_t paddr;
  std::vector<uint8_t> data;
  uint64_t memsz;
};

// An ELF64 x86-64 executable: Ehdr, Phdrs (PT_LOAD per segment, then a PT_NOTE when a PVH entry
// is given), note, segment data.
inline std::vector<uint8_t> make_elf(const std::vector<TestSegment>& segments, uint64_t entry,
                                     std::optional<uint64_t> pvh_entry = std::nullopt) {
  const size_t phnum = segments.size() + (pvh_entry ? 1 : 0);
  std::vector<uint8_t> note;
  if (pvh_entry) {
    const Elf64_Nhdr nhdr{4, 8, 18};
    note.resize(sizeof(nhdr) + 4 + 8);
    std::memcpy(note.data(), &nhdr, sizeof(nhdr));
    std::memcpy(note.data() + sizeof(nhdr), "Xen", 4);
    std::memcpy(note.data() + sizeof(nhdr) + 4, &*pvh_entry, 8);
  }
  size_t offset = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
  const size_t note_offset = offset;
  offset += note.size();

  Elf64_Ehdr ehdr{};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = EM_X86_64;
  ehdr.e_version = EV_CURRENT;
  ehdr.e_entry = entry;
  ehdr.e_phoff = sizeof(Elf64_Ehdr);
  ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  ehdr.e_phentsize = sizeof(Elf64_Phdr);
  ehdr.e_phnum = static_cast<uint16_t>(phnum);

  std::vector<Elf64_Phdr> phdrs;
  for (const auto& s : segments) {
    Elf64_Phdr p{};
    p.p_type = PT_LOAD;
    p.p_flags = PF_R | PF_X;
    p.p_offset = offset;
    p.p_vaddr = s.vaddr;
    p.p_paddr = s.paddr;
    p.p_filesz = s.data.size();
    p.p_memsz = s.memsz;
    p.p_align = 0x1000;
    phdrs.push_back(p);
    offset += s.data.size();
  }
  if (pvh_entry) {
    Elf64_Phdr p{};
    p.p_type = PT_NOTE;
    p.p_offset = note_offset;
    p.p_filesz = note.size();
    p.p_memsz = note.size();
    phdrs.push_back(p);
  }

  std::vector<uint8_t> image(offset);
  std::memcpy(image.data(), &ehdr, sizeof(ehdr));
  std::memcpy(image.data() + sizeof(ehdr), phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr));
  if (!note.empty()) std::memcpy(image.data() + note_offset, note.data(), note.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    std::memcpy(image.data() + phdrs[i].p_offset, segments[i].data.data(), segments[i].data.size());
  }
  return image;
}

// Program header `index` of an image made by make_elf, for tests that break it.
inline Elf64_Phdr* phdr_at(std::vector<uint8_t>& image, size_t index) {
  return reinterpret_cast<Elf64_Phdr*>(image.data() + sizeof(Elf64_Ehdr)) + index;
}

}  // namespace vmm::boot::test_images
