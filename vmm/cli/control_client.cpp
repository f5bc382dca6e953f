#include "vmm/cli/control_client.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"

namespace vmm::cli {

std::string control_request(const std::string& socket_path, const std::string& request) {
  const std::string what = "--api-socket " + socket_path;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) fail("{}: path too long", what);
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno(what);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    throw_errno(what);
  }
  const std::string line = request + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno(what);
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[4096];
  while (response.find('\n') == std::string::npos) {
    const ssize_t n = ::recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(what);
    if (n == 0) fail("{}: the vmm closed the connection without answering", what);
    response.append(buffer, static_cast<size_t>(n));
  }
  return response.substr(0, response.find('\n'));
}

int request_snapshot(const std::string& socket_path, const std::string& directory,
                     bool stay_paused) {
  const nlohmann::json request{
      {"command", "snapshot"}, {"path", directory}, {"paused", stay_paused}};
  try {
    const std::string line = control_request(socket_path, request.dump());
    const nlohmann::json response = nlohmann::json::parse(line, nullptr, false);
    if (response.is_object() && response.value("ok", false)) {
      std::printf("snapshot %s written; the guest is %s\n", directory.c_str(),
                  response.value("state", std::string("?")).c_str());
      return 0;
    }
    const bool has_error =
        response.is_object() && response.contains("error") && response["error"].is_string();
    const std::string error = has_error ? response["error"].get<std::string>() : line;
    std::fprintf(stderr, "vmm: snapshot: %s\n", error.c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "vmm: snapshot: %s\n", e.what());
  }
  return 1;
}

}  // namespace vmm::cli
