#include "boot/initramfs/run_job.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <string_view>

#include "base/util/error.hpp"
#include "boot/initramfs/init/init_abi.h"

namespace vmm::boot {

namespace {

// (uid_t)-1: setuid and setgid refuse it.
constexpr uint32_t kNoId = UINT32_MAX;

class JobWriter {
 public:
  void add(std::string_view text, std::string_view what) {
    if (text.find('\0') != std::string_view::npos) fail("run job: {} holds a NUL byte", what);
    bytes_.insert(bytes_.end(), text.begin(), text.end());
    bytes_.push_back('\0');
  }
  void add_number(uint64_t number) { add(std::to_string(number), "a number"); }
  std::vector<uint8_t> take() && { return std::move(bytes_); }
  size_t size() const { return bytes_.size(); }

 private:
  std::vector<uint8_t> bytes_;
};

bool has_dot_dot_part(std::string_view path) {
  for (size_t start = 0; start <= path.size();) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (path.substr(start, end - start) == "..") return true;
    start = end + 1;
  }
  return false;
}

void check_path(std::string_view path, std::string_view what) {
  if (!path.starts_with('/')) fail("run job: {} '{}' is not an absolute path", what, path);
  if (has_dot_dot_part(path)) fail("run job: {} '{}' has a '..' part", what, path);
}

void check_id(uint32_t id, std::string_view what) {
  if (id == kNoId) fail("run job: {} {} is (uid_t)-1, which no process can have", what, id);
}

std::string joined_groups(const std::vector<uint32_t>& groups) {
  for (const uint32_t group : groups) check_id(group, "group");
  return fmt::format("{}", fmt::join(groups, ","));
}

void add_mounts(JobWriter& writer, const std::vector<RunJob::Mount>& mounts) {
  if (mounts.empty() || mounts.front().path != "/" || !mounts.front().read_only)
    fail("run job: the first mount must be the root, \"/\" read-only");
  if (mounts.size() > VMM_RUN_JOB_MAX_MOUNTS)
    fail("run job: {} mounts, more than the {} the guest takes", mounts.size(),
         VMM_RUN_JOB_MAX_MOUNTS);
  writer.add_number(mounts.size());
  for (size_t i = 0; i < mounts.size(); ++i) {
    const RunJob::Mount& mount = mounts[i];
    writer.add(mount.tag, fmt::format("mount {}'s tag", i));
    if (mount.tag.empty() || mount.tag.size() > VMM_RUN_TAG_MAX)
      fail("run job: mount tag '{}' is not 1 to {} bytes", mount.tag, VMM_RUN_TAG_MAX);
    writer.add(mount.path, fmt::format("mount {}'s path", i));
    check_path(mount.path, "mount path");
    if (i > 0 && mount.path == "/") fail("run job: only the first mount may be \"/\"");
    writer.add(mount.read_only ? "ro" : "rw", "a mount's mode");
  }
}

}  // namespace

std::vector<uint8_t> encode_run_job(const RunJob& job) {
  JobWriter writer;
  writer.add(VMM_RUN_JOB_MAGIC, "the magic");
  check_id(job.uid, "uid");
  writer.add_number(job.uid);
  check_id(job.gid, "gid");
  writer.add_number(job.gid);
  writer.add(joined_groups(job.groups), "the groups");
  writer.add(job.cwd, "cwd");
  check_path(job.cwd, "cwd");
  add_mounts(writer, job.mounts);
  if (job.argv.empty() || job.argv.front().empty()) fail("run job: no command to run");
  writer.add_number(job.argv.size());
  for (size_t i = 0; i < job.argv.size(); ++i) writer.add(job.argv[i], fmt::format("argv[{}]", i));
  writer.add_number(job.env.size());
  for (size_t i = 0; i < job.env.size(); ++i) {
    writer.add(job.env[i], fmt::format("environment entry {}", i));
    const size_t equals = job.env[i].find('=');
    if (equals == 0 || equals == std::string::npos)
      fail("run job: environment entry '{}' is not NAME=value", job.env[i]);
  }
  if (writer.size() > VMM_RUN_JOB_MAX_SIZE)
    fail("run job: {} bytes (arguments and environment), more than the {} the guest takes",
         writer.size(), VMM_RUN_JOB_MAX_SIZE);
  return std::move(writer).take();
}

}  // namespace vmm::boot
