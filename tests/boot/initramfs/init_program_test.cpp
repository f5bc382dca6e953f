#include "boot/initramfs/init_program.hpp"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

namespace vmm::boot {
namespace {

// The embedded /init must run in any guest whatever its disk holds: a static x86-64 executable (an
// ET_EXEC, or an ET_DYN static-pie) with no program interpreter to load.
TEST(InitProgramTest, IsAStaticX86_64Executable) {
  const std::span<const uint8_t> program = init_program();
  ASSERT_GE(program.size(), sizeof(Elf64_Ehdr));
  Elf64_Ehdr header;
  std::memcpy(&header, program.data(), sizeof header);
  ASSERT_EQ(std::memcmp(header.e_ident, ELFMAG, SELFMAG), 0);
  EXPECT_EQ(header.e_ident[EI_CLASS], ELFCLASS64);
  EXPECT_EQ(header.e_ident[EI_DATA], ELFDATA2LSB);
  EXPECT_EQ(header.e_machine, EM_X86_64);
  EXPECT_TRUE(header.e_type == ET_EXEC || header.e_type == ET_DYN) << header.e_type;
  EXPECT_NE(header.e_entry, 0u);

  ASSERT_EQ(header.e_phentsize, sizeof(Elf64_Phdr));
  ASSERT_GT(header.e_phnum, 0);
  ASSERT_LE(header.e_phoff + uint64_t{header.e_phnum} * sizeof(Elf64_Phdr), program.size());
  int loads = 0;
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    std::memcpy(&segment, program.data() + header.e_phoff + i * sizeof segment, sizeof segment);
    EXPECT_NE(segment.p_type, PT_INTERP) << "the init program needs a dynamic loader";
    if (segment.p_type == PT_LOAD) ++loads;
  }
  EXPECT_GT(loads, 0);
}

}  // namespace
}  // namespace vmm::boot
