#include "base/util/file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm {

std::vector<uint8_t> read_file(const std::string& path, const std::string& label,
                               uint64_t max_size) {
  const std::string name = label.empty() ? path : label + " " + path;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno(name);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw_errno(name);
  if (S_ISDIR(st.st_mode)) fail("{}: Is a directory", name);
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", name);
  if (static_cast<uint64_t>(st.st_size) > max_size) {
    fail("{}: file too large ({} bytes, at most {})", name, st.st_size, max_size);
  }
  std::vector<uint8_t> data(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(name);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

}  // namespace vmm
