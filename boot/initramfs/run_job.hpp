#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmm::boot {

// What `vmm run -- CMD` asks the guest's init to do (init/init_abi.h, VMM_INIT_RUN_JOB): mount the
// shares, then run argv as uid/gid/groups in cwd with env.
struct RunJob {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups
  std::string cwd;               // absolute
  struct Mount {
    std::string tag;  // the virtio-fs device's tag
    std::string path;
    bool read_only = true;
  };
  // The first is the root: VMM_RUN_ROOT_TAG's filesystem at "/", read-only.
  std::vector<Mount> mounts;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "NAME=value"
};

// The job as the guest reads it (init_abi.h). Throws vmm::Error for what the format can't carry or
// the init would refuse: a NUL inside a string, an empty argv or argv[0], a relative path or one
// with a ".." part, a root mount that is not "/" read-only, a bad tag, an env entry without
// "NAME=", uid or gid (uid_t)-1, or a job too large.
std::vector<uint8_t> encode_run_job(const RunJob& job);

}  // namespace vmm::boot
