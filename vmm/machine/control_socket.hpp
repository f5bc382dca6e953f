#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <thread>

#include "base/event/event_loop.hpp"
#include "base/util/unique_fd.hpp"
#include "vmm/machine/control_protocol.hpp"

namespace vmm {

// Serves the control protocol (control_protocol.hpp) on a Unix stream socket, on a thread of its
// own: a pause parks the machine's event loop, and the socket must still answer "resume" then.
// Clients connect, write requests one per line and read one response line per request.
class ControlServer {
 public:
  // Binds `path` and starts serving. A path where another server still listens is refused
  // ("--api-socket PATH: in use"); a stale socket file left by a process that died is replaced.
  ControlServer(std::string path, ControlTarget& target);
  // Stops serving, disconnects the clients and removes the socket file (if it is still ours).
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  struct Client {
    UniqueFd fd;
    std::string in;   // bytes received, not yet a whole line
    std::string out;  // responses not yet sent
  };

  void accept_clients();
  void on_client(int fd, uint32_t events);
  // Answers every whole line in `in`; false when the client must be disconnected.
  bool serve_lines(Client& client);
  // Sends what it can of `out` without blocking; false when the client is gone or hopeless.
  bool flush(Client& client);
  void disconnect(int fd);

  std::string path_;
  ControlTarget& target_;
  UniqueFd listener_;
  dev_t device_ = 0;
  ino_t inode_ = 0;
  EventLoop loop_;
  std::map<int, Client> clients_;
  std::thread thread_;
};

}  // namespace vmm
