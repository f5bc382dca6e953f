#include "boot/bzimage.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/memory/layout.hpp"
#include "base/util/error.hpp"
#include "base/util/size.hpp"

namespace vmm::boot {

namespace {

// The boot sector plus the start of the setup code: every header field we read lies in here.
constexpr size_t kMinImageSize = 1024;
// A boot sector of the old days with setup_sects == 0 really means 4.
constexpr uint8_t kDefaultSetupSects = 4;

}  // namespace

uint64_t BzImage::memory_span() const {
  return std::max<uint64_t>(header.init_size, payload.size());
}

bool looks_like_bzimage(std::span<const uint8_t> image) {
  constexpr size_t kMagicOffset = kSetupHeaderOffset + offsetof(SetupHeader, header);
  if (image.size() < kMagicOffset + sizeof(uint32_t)) return false;
  uint32_t magic;
  std::memcpy(&magic, image.data() + kMagicOffset, sizeof(magic));
  return magic == kHdrSMagic;
}

BzImage parse_bzimage(std::span<const uint8_t> image, const std::string& name) {
  if (image.size() < kMinImageSize) {
    fail("{}: truncated ({} bytes, a bzImage has at least {})", name, image.size(), kMinImageSize);
  }
  BzImage result{};
  std::memcpy(&result.header, image.data() + kSetupHeaderOffset, sizeof(SetupHeader));
  // Packed fields are copied (uint32_t{...}) before fmt binds them to references.
  SetupHeader& hdr = result.header;

  if (hdr.header != kHdrSMagic) fail("{}: not a Linux kernel image (no \"HdrS\" magic)", name);
  if (hdr.boot_flag != kBootFlag) {
    fail("{}: not a Linux kernel image (boot flag is {:#06x}, expected 0xaa55)", name,
         uint16_t{hdr.boot_flag});
  }
  if (hdr.version < kMinBootProtocol) {
    fail("{}: boot protocol {}.{:02} is too old (need 2.12 or later)", name, hdr.version >> 8,
         hdr.version & 0xff);
  }
  // The header really ends at 0x202 + the jump's displacement byte; what follows is setup code,
  // which must not be read (or copied into the zero page) as if it were header fields.
  const size_t header_bytes =
      std::min(sizeof(SetupHeader), 0x202 + image[0x201] - kSetupHeaderOffset);
  std::memset(reinterpret_cast<uint8_t*>(&hdr) + header_bytes, 0,
              sizeof(SetupHeader) - header_bytes);
  const uint64_t setup_sects = hdr.setup_sects == 0 ? kDefaultSetupSects : hdr.setup_sects;
  const uint64_t setup_size = (setup_sects + 1) * kSectorSize;
  if (setup_size >= image.size()) {
    fail("{}: truncated (setup claims {} bytes, file has {})", name, setup_size, image.size());
  }
  if ((hdr.xloadflags & kXlfKernel64) == 0) {
    fail("{}: kernel has no 64-bit entry point (XLF_KERNEL_64 not set)", name);
  }
  if (!std::has_single_bit(hdr.kernel_alignment)) {
    fail("{}: kernel_alignment {:#x} is not a power of two", name, uint32_t{hdr.kernel_alignment});
  }
  if (hdr.relocatable_kernel != 0 && hdr.pref_address % hdr.kernel_alignment != 0) {
    fail("{}: pref_address {:#x} is not aligned to kernel_alignment {:#x}", name,
         uint64_t{hdr.pref_address}, uint32_t{hdr.kernel_alignment});
  }
  if (hdr.init_size == 0) fail("{}: init_size is zero", name);
  // syssize counts the protected-mode payload in 16-byte paragraphs: a file cut short (a partial
  // download, a full disk) is caught here rather than booted as garbage. The last paragraph may
  // be partial.
  const uint64_t payload_size = uint64_t{hdr.syssize} * 16;
  if (payload_size > image.size() - setup_size + 15) {
    fail("{}: truncated (the header claims {} bytes of kernel after the setup, file has {})", name,
         payload_size, image.size() - setup_size);
  }

  result.payload = image.subspan(setup_size);
  return result;
}

uint64_t bzimage_load_address(const BzImage& image, uint64_t low_ram_end, const std::string& name) {
  const SetupHeader& hdr = image.header;
  const uint64_t span = image.memory_span();
  const auto fits = [&](uint64_t start) {
    return start >= layout::kHighMemStart && start <= low_ram_end && span <= low_ram_end - start;
  };
  uint64_t load = layout::kHighMemStart;
  if (hdr.relocatable_kernel != 0) {
    load = fits(hdr.pref_address) ? hdr.pref_address
                                  : align_up(layout::kHighMemStart, hdr.kernel_alignment);
  }
  if (!fits(load)) {
    fail("{}: not enough guest memory for the kernel (needs {} MiB)", name,
         align_up(load + span, MiB) / MiB);
  }
  return load;
}

}  // namespace vmm::boot
