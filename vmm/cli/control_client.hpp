#pragma once

#include <string>

namespace vmm::cli {

// Sends one request line to a vmm's control socket and returns its one-line response. Throws
// vmm::Error naming the socket ("--api-socket PATH: Connection refused").
std::string control_request(const std::string& socket_path, const std::string& request);

// `vmm snapshot`: asks the vmm at `socket_path` for a snapshot in `directory`. Returns the exit
// status: 0, or 1 after printing the vmm's one-line error.
int request_snapshot(const std::string& socket_path, const std::string& directory,
                     bool stay_paused);

}  // namespace vmm::cli
