#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <string_view>
#include <thread>

#include "base/event/event_loop.hpp"
#include "base/util/unique_fd.hpp"
#include "vmm/machine/control_protocol.hpp"
#include "vmm/machine/line_framer.hpp"

namespace vmm {

// One client's side of the control protocol, without its socket: request bytes in, response
// lines out. The server feeds it what it reads and sends what it answers.
class ControlSession {
 public:
  explicit ControlSession(ControlTarget& target) : target_(target) {}

  // Answers each request line that `bytes` completes (a blank line gets no answer), appending
  // the responses to output(), one line each. False once the client sent a line longer than
  // kMaxControlRequestBytes: the refusal is then the last response, and the client is to be
  // disconnected once it is sent.
  bool receive(std::string_view bytes);

  // Responses not yet sent; the server erases what it sends.
  std::string& output() { return output_; }
  // Bytes of an unfinished request held (at most kMaxControlRequestBytes).
  size_t buffered_input() const { return framer_.buffered(); }

 private:
  ControlTarget& target_;
  LineFramer framer_{kMaxControlRequestBytes};
  std::string output_;
};

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
    ControlSession session;
  };

  void accept_clients();
  void on_client(int fd, uint32_t events);
  // Sends what it can of the client's responses without blocking; false when the client is
  // gone or hopeless.
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
