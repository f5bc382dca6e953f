#include "boot/initramfs/root_fs.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/util/error.hpp"
#include "boot/initramfs/modules.hpp"

namespace vmm::boot {

namespace {

struct Signature {
  size_t offset;
  std::string_view magic;
  std::string_view module;
};

// Each filesystem's magic where its superblock puts it: ext2/3/4's s_magic 0xEF53 (little-endian)
// 56 bytes into the superblock at 1024; XFS's sb_magicnum at 0; btrfs's at 0x40 into its
// superblock at 64 KiB.
constexpr Signature kSignatures[] = {
    {0, "XFSB", "xfs"},
    {0x10040, "_BHRfS_M", "btrfs"},
    {1024 + 56, "\x53\xef", "ext4"},
};
constexpr size_t kProbeSize = size_t{128} << 10;

// Reads up to `out.size()` bytes from the start of the file; fewer when the file is shorter.
size_t read_start(int fd, std::vector<uint8_t>& out, const std::string& name) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(name);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace

std::optional<std::string> detect_root_fs_module(int fd, const std::string& name) {
  std::vector<uint8_t> start(kProbeSize);
  const size_t size = read_start(fd, start, name);
  for (const Signature& signature : kSignatures) {
    if (signature.offset + signature.magic.size() <= size &&
        std::memcmp(start.data() + signature.offset, signature.magic.data(),
                    signature.magic.size()) == 0) {
      return std::string(signature.module);
    }
  }
  return std::nullopt;
}

std::string rootfstype_module(std::string_view fstype) {
  if (fstype == "ext2" || fstype == "ext3") return "ext4";
  return normalized_module_name(fstype);
}

}  // namespace vmm::boot
