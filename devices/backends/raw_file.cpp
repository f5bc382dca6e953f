#include "devices/backends/raw_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

// Whole-file OFD lock: it belongs to this open file description, so it conflicts even with
// another open() of the same file in this process, and goes away when the descriptor closes.
void lock_image(const std::string& path, int fd, bool read_only) {
  struct flock lock {};
  lock.l_type = read_only ? F_RDLCK : F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 0;  // to the end of the file, however it grows
  if (::fcntl(fd, F_OFD_SETLK, &lock) == 0) return;
  const int err = errno;
  if (err == EAGAIN || err == EACCES)
    fail("{}: in use (locked by another vmm, QEMU, or another --disk of this VM)", path);
  if (err == ENOLCK || err == EINVAL || err == EOPNOTSUPP || err == ENOSYS) {
    // Some file systems (network, FUSE) cannot lock; refusing them would make them unusable.
    spdlog::warn("{}: cannot be locked ({}); nothing stops another process writing it", path,
                 std::strerror(err));
    return;
  }
  throw Error(errno_message(path + ": lock", err));
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
