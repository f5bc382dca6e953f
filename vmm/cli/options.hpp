#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/machine_config.hpp"
#include "vmm/security/jail.hpp"

namespace vmm::cli {

// `vmm snapshot --api-socket PATH [--paused] DIR`: asks a running vmm for a snapshot.
struct SnapshotRequest {
  std::string api_socket;
  std::string directory;
  bool stay_paused = false;
};

struct Options {
  MachineConfig machine;
  // --restore DIR: the machine comes from a snapshot; `machine` is unused.
  std::optional<RestoreConfig> restore;
  std::optional<SnapshotRequest> snapshot;
  // --jail: vmm confines itself before it makes the machine (security::enter_jail).
  std::optional<security::JailConfig> jail;
  std::string log_level = "warn";
};

// The outcome of parsing argv: options to run with, or a status to exit with right away (after
// --help/--version, or a one-line error for bad input).
struct ParseResult {
  std::optional<Options> options;
  int exit_status = 0;
  std::string output;  // for stdout (help, version)
  std::string error;   // one line for stderr
};

// What `vmm run` takes from the process that runs it.
struct RunContext {
  std::string kernel_release;  // uname -r: the default kernel is /boot/vmlinuz-<release>
  std::string cwd;
  std::vector<std::string> environment;
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;

  static RunContext of_this_process();
};

ParseResult parse_command_line(const std::vector<std::string>& args,
                               const RunContext& context = RunContext::of_this_process());

// "PATH[,readonly=on|off][,serial=ID][,io=auto|io_uring|threads]"; throws vmm::Error naming the
// bad part.
DiskConfig parse_disk(const std::string& text);

// "tap=NAME[,mac=XX:XX:XX:XX:XX:XX]"; throws vmm::Error naming the bad part.
NetConfig parse_net(const std::string& text);

// "cid=N,socket=PATH"; throws vmm::Error naming the bad part.
VsockConfig parse_vsock(const std::string& text);

// "HOST_DIR:TAG[,readonly=on|off]" or "socket=PATH,tag=TAG"; throws vmm::Error naming the bad
// part.
ShareConfig parse_share(const std::string& text);

// "fs|blk,socket=PATH[,tag=TAG]" (fs needs the tag); throws vmm::Error naming the bad part.
VhostUserConfig parse_vhost_user(const std::string& text);

// "DIR,uid=N,gid=N[,cgroup=NAME][,memory=SIZE][,cpus=N][,pids=N][,nofile=N][,fsize=SIZE]", DIR
// made absolute from `cwd`; throws vmm::Error naming the bad part.
security::JailConfig parse_jail(const std::string& text, const std::string& cwd);

// "stdio", "none", "file:PATH"; nullopt for anything else.
std::optional<SerialConfig> parse_serial(const std::string& text);

}  // namespace vmm::cli
