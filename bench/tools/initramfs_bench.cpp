// How long vmm takes to build its initramfs for a stock kernel (issue 12: under 50 ms of start-up
// for a Debian kernel). For each kernel folder of the lab's cache, `RUNS` times in one process,
// from the kernel image in memory (vmm reads it anyway) to the archive in place: the release read
// from the image, the modules folder found, modules.dep and modules.builtin parsed, the modules
// resolved, opened and copied once into the destination. Each run writes the archive twice:
//   fresh    into memory mapped for it and never touched, as a new guest's RAM is (its page
//            faults are in the time)
//   touched  into memory written before (the same build without the destination's page faults)
// and, for scale, copies an archive as large into fresh memory (what loading any initrd of that
// size costs: the page faults alone). Prints one line per kernel:
//   INITRAMFS flavour=F release=R modules=N bytes=B runs=K first_ms=X fresh_median_ms=Y
//     fresh_max_ms=Z touched_median_ms=U touched_max_ms=V copy_median_ms=W
// (first_ms: the process's first build, into fresh memory: what one vmm start pays.) Built against
// vmm's internal libraries by bench/initramfs_build.sh; see bench/README.md.
//
// usage: initramfs_bench RUNS KERNELS_DIR FLAVOUR...
#include <fmt/format.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/file.hpp"
#include "boot/initramfs/init_program.hpp"
#include "boot/initramfs/initramfs.hpp"
#include "boot/kernel_release.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// An anonymous mapping nothing has touched yet, like a new guest's RAM.
class FreshMemory {
 public:
  explicit FreshMemory(size_t size) : size_(size) {
    void* memory =
        ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) vmm::throw_errno("mmap");
    memory_ = static_cast<uint8_t*>(memory);
  }
  FreshMemory(const FreshMemory&) = delete;
  FreshMemory& operator=(const FreshMemory&) = delete;
  ~FreshMemory() { ::munmap(memory_, size_); }

  std::span<uint8_t> span() const { return {memory_, size_}; }

 private:
  uint8_t* memory_;
  size_t size_;
};

// What vmm does at start-up once it has the kernel's bytes and knows the root filesystem: the
// Initramfs, ready to be written.
vmm::boot::Initramfs open_initramfs(const std::vector<uint8_t>& kernel,
                                    const std::string& package) {
  const auto release = vmm::boot::kernel_release(kernel);
  if (!release) vmm::fail("{}/vmlinuz: no release in the image", package);
  const vmm::boot::ModulesDir modules =
      vmm::boot::find_modules_dir(package, *release, "--kernel " + package + "/vmlinuz");
  return vmm::boot::Initramfs({*release, modules, "ext4", vmm::boot::init_program()});
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

double max_of(const std::vector<double>& values) {
  return *std::max_element(values.begin(), values.end());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || std::atoi(argv[1]) <= 0) {
    std::fprintf(stderr, "usage: %s RUNS KERNELS_DIR FLAVOUR...\n", argv[0]);
    return 2;
  }
  const int runs = std::atoi(argv[1]);
  const std::string kernels = argv[2];
  try {
    for (int f = 3; f < argc; ++f) {
      const std::string flavour = argv[f];
      const std::string package = fmt::format("{}/{}", kernels, flavour);
      const std::vector<uint8_t> kernel = vmm::read_file(package + "/vmlinuz", "--kernel");
      std::vector<double> fresh, touched, copy;
      std::vector<uint8_t> touched_memory;
      size_t modules = 0, bytes = 0;
      std::string release;
      for (int i = 0; i < runs; ++i) {
        {
          const auto start = Clock::now();
          const vmm::boot::Initramfs initramfs = open_initramfs(kernel, package);
          FreshMemory memory(initramfs.size());
          initramfs.write_to(memory.span());
          fresh.push_back(ms_since(start));
          modules = initramfs.modules().size();
          bytes = initramfs.size();
        }
        if (touched_memory.empty()) touched_memory.assign(bytes, 0);
        auto start = Clock::now();
        open_initramfs(kernel, package).write_to(touched_memory);
        touched.push_back(ms_since(start));
        start = Clock::now();
        {
          FreshMemory memory(bytes);
          std::memcpy(memory.span().data(), touched_memory.data(), bytes);
          copy.push_back(ms_since(start));
        }
      }
      release = *vmm::boot::kernel_release(kernel);
      std::printf(
          "INITRAMFS flavour=%s release=%s modules=%zu bytes=%zu runs=%d first_ms=%.2f "
          "fresh_median_ms=%.2f fresh_max_ms=%.2f touched_median_ms=%.2f touched_max_ms=%.2f "
          "copy_median_ms=%.2f\n",
          flavour.c_str(), release.c_str(), modules, bytes, runs, fresh.front(), median(fresh),
          max_of(fresh), median(touched), max_of(touched), median(copy));
    }
  } catch (const vmm::Error& e) {
    std::fprintf(stderr, "initramfs_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
