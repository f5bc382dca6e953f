#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vmm/machine_config.hpp"

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

ParseResult parse_command_line(const std::vector<std::string>& args);

// "PATH[,readonly=on|off][,serial=ID][,io=auto|io_uring|threads]"; throws vmm::Error naming the
// bad part.
DiskConfig parse_disk(const std::string& text);

// "tap=NAME[,mac=XX:XX:XX:XX:XX:XX]"; throws vmm::Error naming the bad part.
NetConfig parse_net(const std::string& text);

// "cid=N,socket=PATH"; throws vmm::Error naming the bad part.
VsockConfig parse_vsock(const std::string& text);

// "stdio", "none", "file:PATH"; nullopt for anything else.
std::optional<SerialConfig> parse_serial(const std::string& text);

}  // namespace vmm::cli
