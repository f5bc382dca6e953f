#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vmm::boot {

// The module of the filesystem a disk image holds, from its superblock: "ext4" (which also
// mounts ext2 and ext3), "xfs" or "btrfs"; nullopt for anything else (the caller then asks for
// rootfstype=). Reads at most the first 128 KiB of `fd` (pread: its file offset is untouched).
// `name` ("--disk /x.img") starts the message of a failed read.
std::optional<std::string> detect_root_fs_module(int fd, const std::string& name);

// The module that provides the filesystem a `rootfstype=` value names: ext2, ext3 and ext4 ->
// "ext4"; any other name is its own module ("xfs", "btrfs", "f2fs"), '-' as '_'.
std::string rootfstype_module(std::string_view fstype);

}  // namespace vmm::boot
