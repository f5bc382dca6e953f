#pragma once

// The kernel loader's side of the bzImage and ELF targets: the fuzzer's bytes become the kernel
// file (a memfd, reached through /proc/self/fd, so nothing is left on disk) and go through
// load_kernel() and boot_cpu_state() into a small guest, with a small initrd so that its
// placement against the fuzzed header is exercised too. A malformed kernel must end in vmm::Error,
// nothing else.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "boot/kernel_loader.hpp"
#include "tests/fuzz/fuzz_guest.hpp"

namespace vmm::fuzz {

// Enough for the synthetic kernels of the corpus (a relocatable bzImage preferring 16 MiB with
// a few MiB of init_size); small, so that zeroing a fuzzed bss stays fast.
inline constexpr uint64_t kKernelRamSize = 32 << 20;

inline UniqueFd memfd_with(const char* name, std::span<const uint8_t> bytes) {
  UniqueFd fd(memfd_create(name, MFD_CLOEXEC));
  if (!fd) throw_errno("memfd_create");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n <= 0) throw_errno("write memfd");
    done += static_cast<size_t>(n);
  }
  return fd;
}

inline std::string fd_path(const UniqueFd& fd) {
  return "/proc/self/fd/" + std::to_string(fd.get());
}

inline void load_kernel_file(std::span<const uint8_t> kernel) {
  // One RAM buffer for the whole run: the loader only writes it, so leftovers do not matter.
  static std::vector<uint8_t> ram(kKernelRamSize);
  static const UniqueFd initrd = memfd_with("vmm-fuzz-initrd", std::vector<uint8_t>(4096, 0x42));
  const GuestMemory memory = GuestMemory::from_regions({{0, ram.size(), ram.data()}});
  const UniqueFd file = memfd_with("vmm-fuzz-kernel", kernel);
  try {
    const boot::BootEntry entry =
        boot::load_kernel(memory, boot::KernelLoadConfig{.kernel_path = fd_path(file),
                                                         .initrd_path = fd_path(initrd),
                                                         .cmdline = "console=ttyS0 panic=-1",
                                                         .rsdp_address = 0xe0000});
    boot::boot_cpu_state(memory, entry);
  } catch (const Error&) {
    // A kernel the loader refuses, with a message: the expected outcome for most inputs.
  }
}

// A kernel target: the input is the kernel file. `check` parses it and checks what the parser
// promises (refusing it with vmm::Error is fine), then the file goes through the whole load.
template <void (*check)(std::span<const uint8_t>)>
void run_kernel_file(Reader& in) {
  const std::span<const uint8_t> image = in.bytes(in.remaining());
  try {
    check(image);
  } catch (const Error&) {
  }
  load_kernel_file(image);
}

}  // namespace vmm::fuzz
