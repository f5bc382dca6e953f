#include "devices/backends/raw_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/util/error.hpp"

namespace vmm::devices {
namespace {

void check_file_type(const std::string& path, mode_t mode) {
  if (S_ISDIR(mode)) fail("{}: is a directory", path);
  if (!S_ISREG(mode) && !S_ISBLK(mode)) fail("{}: not a regular file or block device", path);
}

UniqueFd open_image(const std::string& path, bool read_only) {
  // O_NONBLOCK keeps open() from hanging on a FIFO that slipped past the stat() check (it is
  // cleared once the file type is confirmed); O_NOCTTY keeps a terminal from becoming ours.
  const int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  UniqueFd fd(::open(path.c_str(), flags));
  if (fd) return fd;
  const int err = errno;
  if (err == EISDIR) fail("{}: is a directory", path);
  if (!read_only && (err == EROFS || err == EACCES) &&
      ::faccessat(AT_FDCWD, path.c_str(), R_OK, AT_EACCESS) == 0) {
    throw Error(errno_message(path, err) + " (readonly=on opens it read-only)");
  }
  throw Error(errno_message(path, err));
}

uint64_t image_size(const std::string& path, int fd, const struct stat& st) {
  if (!S_ISBLK(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) != 0) throw_errno(path + ": BLKGETSIZE64");
  return size;
}

// QEMU's image locks (block/file-posix.c), which vmm takes too so that each sees the other: one
// byte per permission, at kUseBase + bit for "I use it" and at kForbidBase + bit for "I forbid it
// to others", each held with a shared OFD lock. A conflict is then another open file
// description's lock on the byte that says so, seen with F_OFD_GETLK.
enum class Permission : off_t {
  kConsistentRead = 0,  // QEMU's BLK_PERM_CONSISTENT_READ (0x1)
  kWrite = 1,           // BLK_PERM_WRITE (0x2)
  kResize = 3,          // BLK_PERM_RESIZE (0x8)
};
constexpr off_t kUseBase = 100;     // RAW_LOCK_PERM_BASE
constexpr off_t kForbidBase = 200;  // RAW_LOCK_SHARED_BASE

off_t use_byte(Permission permission) {
  return kUseBase + static_cast<off_t>(permission);
}
off_t forbid_byte(Permission permission) {
  return kForbidBase + static_cast<off_t>(permission);
}

flock byte_lock(short type, off_t byte) {
  flock lock{};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = byte;
  lock.l_len = 1;
  return lock;
}

// Whether another open file description holds a lock on `byte` (another process, or another
// open() in this one: OFD locks belong to the description, not the process).
bool held_by_others(const std::string& path, int fd, off_t byte) {
  flock lock = byte_lock(F_WRLCK, byte);
  if (::fcntl(fd, F_OFD_GETLK, &lock) != 0) throw_errno(path + ": testing its lock");
  return lock.l_type != F_UNLCK;
}

[[noreturn]] void fail_in_use(const std::string& path, std::string_view what) {
  fail("{}: in use: locked by another vmm, QEMU, or another --disk of this VM, which {}", path,
       what);
}

// Locks the image as QEMU locks a raw drive: a writable disk uses reading and writing, a read-only
// one reading; both forbid others writing and resizing (QEMU's share-rw=off), as the guest caches
// what it reads. Like QEMU, it locks first and checks after, so of two racing openers at worst both
// fail. The locks go when the descriptor closes.
void lock_image(const std::string& path, int fd, bool read_only) {
  std::vector<Permission> uses{Permission::kConsistentRead};
  if (!read_only) uses.push_back(Permission::kWrite);
  const std::vector<Permission> forbids{Permission::kWrite, Permission::kResize};

  std::vector<off_t> bytes;
  bytes.reserve(uses.size() + forbids.size());
  for (const Permission permission : uses) bytes.push_back(use_byte(permission));
  for (const Permission permission : forbids) bytes.push_back(forbid_byte(permission));
  for (const off_t byte : bytes) {
    flock lock = byte_lock(F_RDLCK, byte);
    if (::fcntl(fd, F_OFD_SETLK, &lock) == 0) continue;
    const int err = errno;
    // Only an exclusive lock blocks a shared one: a tool that locks the whole file.
    if (err == EAGAIN || err == EACCES) fail_in_use(path, "holds an exclusive lock on it");
    if (err == ENOLCK || err == EINVAL || err == EOPNOTSUPP || err == ENOSYS) {
      // Some file systems (network, FUSE) cannot lock; refusing them would make them unusable.
      spdlog::warn("{}: cannot be locked ({}); nothing stops another process writing it", path,
                   std::strerror(err));
      return;
    }
    throw Error(errno_message(path + ": lock", err));
  }

  for (const Permission permission : forbids) {
    if (!held_by_others(path, fd, use_byte(permission))) continue;
    fail_in_use(path, permission == Permission::kWrite ? "writes it" : "may resize it");
  }
  for (const Permission permission : uses) {
    if (!held_by_others(path, fd, forbid_byte(permission))) continue;
    if (permission == Permission::kWrite)
      fail_in_use(path, "forbids writing it (readonly=on would share it)");
    fail_in_use(path, "forbids reading it");
  }
}

}  // namespace

RawFile RawFile::open(const std::string& path, bool read_only) {
  // Checked before open() too, so that opening never touches a character device (a tape rewinds,
  // a serial port raises DTR); the fstat() below is the authoritative check.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_errno(path);
  check_file_type(path, st.st_mode);

  UniqueFd fd = open_image(path, read_only);
  if (::fstat(fd.get(), &st) != 0) throw_errno(path);
  check_file_type(path, st.st_mode);
  const int status = ::fcntl(fd.get(), F_GETFL);
  if (status < 0 || ::fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) != 0) throw_errno(path);

  const uint64_t size = image_size(path, fd.get(), st);
  lock_image(path, fd.get(), read_only);
  spdlog::debug("{}: opened {}, {} bytes", path, read_only ? "read-only" : "read-write", size);
  return RawFile(std::move(fd), path, size, read_only);
}

}  // namespace vmm::devices
