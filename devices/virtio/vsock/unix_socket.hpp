#pragma once

#include <string>

#include "base/util/unique_fd.hpp"

namespace vmm::devices::virtio::vsock {

// A listening, non-blocking, close-on-exec Unix stream socket bound at `path`. A stale socket
// file (nothing accepts on it) is replaced; a live one or a file that is not a socket is refused:
// vmm::Error "PATH: in use" / "PATH: exists and is not a socket" (or the failing call's errno).
UniqueFd listen_unix(const std::string& path);

// A non-blocking, close-on-exec Unix stream socket connected to `path`. Connecting to a Unix
// socket does not wait for the peer's accept(): it succeeds at once or fails (EAGAIN when the
// listener's backlog is full). Returns an invalid fd on failure, errno telling why.
UniqueFd connect_unix(const std::string& path);

}  // namespace vmm::devices::virtio::vsock
