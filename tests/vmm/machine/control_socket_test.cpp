#include "vmm/machine/control_socket.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm {
namespace {

using devices::testing::TempDir;
using nlohmann::json;

class FakeTarget : public ControlTarget {
 public:
  MachineState state() const override { return state_.load(); }
  std::chrono::milliseconds uptime() const override { return std::chrono::milliseconds(5); }
  void pause() override { state_ = MachineState::kPaused; }
  void resume() override { state_ = MachineState::kRunning; }
  void stop() override { state_ = MachineState::kStopped; }
  void snapshot(const std::string& /*path*/, bool /*stay_paused*/) override {}
  MachineConfig config() const override { return config_; }

  std::atomic<MachineState> state_{MachineState::kRunning};
  MachineConfig config_;
};

sockaddr_un address_of(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un address = address_of(path);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    throw_errno("connect " + path);
  }
  return fd;
}

void send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) throw_errno("send");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

// Reads up to the next '\n' (which it drops); "" at EOF or after 10 s without one.
std::string read_line(int fd) {
  std::string line;
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return line;
    char c;
    const ssize_t n = ::recv(fd, &c, 1, 0);
    if (n <= 0) return line;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

json request(int fd, std::string_view line) {
  send_all(fd, std::string(line) + "\n");
  return json::parse(read_line(fd), nullptr, false);
}

// The responses in `output`, one per line.
std::vector<json> responses(const std::string& output) {
  std::vector<json> parsed;
  size_t start = 0;
  for (size_t end = output.find('\n'); end != std::string::npos; end = output.find('\n', start)) {
    parsed.push_back(json::parse(output.substr(start, end - start), nullptr, false));
    start = end + 1;
  }
  EXPECT_EQ(start, output.size()) << "a response without its newline";
  return parsed;
}

TEST(ControlSession, AnswersEachRequestLineOnceAndSkipsBlankOnes) {
  FakeTarget target;
  ControlSession session(target);
  EXPECT_TRUE(session.receive("{\"command\":\"pause\"}\n \t\r\n\n{\"command\":\"sta"));
  EXPECT_EQ(session.buffered_input(), 15u);
  EXPECT_TRUE(session.receive("tus\"}\r\nnot json\n"));
  EXPECT_EQ(session.buffered_input(), 0u);
  const std::vector<json> answers = responses(session.output());
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0]["state"], "paused");
  EXPECT_EQ(answers[1]["uptime_ms"], 5);
  EXPECT_EQ(answers[2]["ok"], false);
}

TEST(ControlSession, AnOversizedRequestIsRefusedOnceAndEndsTheSession) {
  FakeTarget target;
  ControlSession session(target);
  EXPECT_TRUE(session.receive("{\"command\":\"status\"}\n"));
  EXPECT_TRUE(session.receive(std::string(kMaxControlRequestBytes, 'x')));
  EXPECT_EQ(session.buffered_input(), kMaxControlRequestBytes);
  EXPECT_FALSE(session.receive("x\n{\"command\":\"stop\"}\n"));
  EXPECT_FALSE(session.receive("{\"command\":\"stop\"}\n"));
  EXPECT_EQ(session.buffered_input(), 0u);
  const std::vector<json> answers = responses(session.output());
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0]["ok"], true);
  EXPECT_NE(answers[1]["error"].get<std::string>().find("longer than"), std::string::npos);
  EXPECT_EQ(target.state_, MachineState::kRunning) << "a request after the refusal was served";
}

class ControlSocket : public ::testing::Test {
 protected:
  TempDir dir;
  std::string path = dir.file("api.sock");
  FakeTarget target;
};

TEST_F(ControlSocket, AnswersRequestsOnePerLine) {
  ControlServer server(path, target);
  UniqueFd client = connect_to(path);
  EXPECT_EQ(request(client.get(), R"({"command":"status"})"),
            json::parse(R"({"ok":true,"state":"running","uptime_ms":5})"));
  EXPECT_EQ(request(client.get(), R"({"command":"pause"})")["state"], "paused");
  EXPECT_EQ(target.state_, MachineState::kPaused);
  EXPECT_EQ(request(client.get(), R"({"command":"resume"})")["state"], "running");
  EXPECT_EQ(request(client.get(), R"({"command":"stop"})")["state"], "stopped");
}

TEST_F(ControlSocket, PipelinedAndSplitRequestsAreAnsweredInOrder) {
  ControlServer server(path, target);
  UniqueFd client = connect_to(path);
  send_all(client.get(), "{\"command\":\"pause\"}\n\n{\"command\":\"sta");
  send_all(client.get(), "tus\"}\r\n{\"command\":\"nope\"}\n");
  EXPECT_EQ(json::parse(read_line(client.get()))["state"], "paused");
  EXPECT_EQ(json::parse(read_line(client.get()))["uptime_ms"], 5);
  EXPECT_EQ(json::parse(read_line(client.get()))["ok"], false);
}

TEST_F(ControlSocket, GarbageGetsAnErrorAndTheConnectionStaysUsable) {
  ControlServer server(path, target);
  UniqueFd client = connect_to(path);
  EXPECT_EQ(request(client.get(), std::string_view("\x00\xff\x01garbage", 10))["ok"], false);
  EXPECT_EQ(request(client.get(), "{\"command\":42}")["ok"], false);
  EXPECT_EQ(request(client.get(), R"({"command":"status"})")["ok"], true);
}

TEST_F(ControlSocket, AHugeLineGetsAnErrorAndIsDisconnected) {
  ControlServer server(path, target);
  UniqueFd client = connect_to(path);
  // No newline: the server can't wait for the end of it.
  send_all(client.get(), std::string(kMaxControlRequestBytes + 4096, 'x'));
  const json response = json::parse(read_line(client.get()), nullptr, false);
  EXPECT_EQ(response["ok"], false);
  EXPECT_NE(response["error"].get<std::string>().find("longer than"), std::string::npos);
  EXPECT_EQ(read_line(client.get()), "");  // then EOF (or a reset)
  // Others are still served.
  UniqueFd other = connect_to(path);
  EXPECT_EQ(request(other.get(), R"({"command":"status"})")["ok"], true);
}

TEST_F(ControlSocket, AClientThatHangsUpMidRequestIsForgotten) {
  ControlServer server(path, target);
  for (int i = 0; i < 100; ++i) {
    UniqueFd client = connect_to(path);
    send_all(client.get(), R"({"command":"sta)");
  }
  // The server forgets each as it sees its hang-up; until it has seen enough of them it is still
  // full (64 clients) and refuses a newcomer. One that never forgot would refuse them all.
  json reply;
  for (int attempt = 0; attempt < 500 && !reply.is_object(); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    UniqueFd client = connect_to(path);
    reply = request(client.get(), R"({"command":"status"})");
  }
  ASSERT_TRUE(reply.is_object()) << "every new client was refused";
  EXPECT_EQ(reply["ok"], true);
}

TEST_F(ControlSocket, SeveralClientsAtOnce) {
  ControlServer server(path, target);
  std::vector<UniqueFd> clients;
  clients.reserve(8);
  for (int i = 0; i < 8; ++i) clients.push_back(connect_to(path));
  for (auto& client : clients) send_all(client.get(), "{\"command\":\"status\"}\n");
  for (auto& client : clients) EXPECT_EQ(json::parse(read_line(client.get()))["ok"], true);
}

TEST_F(ControlSocket, ThePathIsRemovedOnDestruction) {
  { ControlServer server(path, target); }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(ControlSocket, APathInUseIsRefused) {
  ControlServer server(path, target);
  try {
    ControlServer second(path, target);
    FAIL() << "a second server took a live socket";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--api-socket " + path + ": in use");
  }
  // The first one still serves.
  UniqueFd client = connect_to(path);
  EXPECT_EQ(request(client.get(), R"({"command":"status"})")["ok"], true);
}

TEST_F(ControlSocket, AStaleSocketIsReplaced) {
  {
    // A socket file nobody listens on: what a killed vmm leaves behind.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un address = address_of(path);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)), 0);
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  ControlServer server(path, target);
  UniqueFd client = connect_to(path);
  EXPECT_EQ(request(client.get(), R"({"command":"status"})")["ok"], true);
}

TEST_F(ControlSocket, SomethingElseThanASocketIsNotReplaced) {
  { std::ofstream(path) << "precious"; }
  try {
    ControlServer server(path, target);
    FAIL() << "replaced a regular file";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--api-socket " + path + ": exists and is not a socket");
  }
  EXPECT_TRUE(std::filesystem::is_regular_file(path));
}

TEST_F(ControlSocket, BadPathsAreNamed) {
  try {
    ControlServer server(dir.file("missing/dir/api.sock"), target);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos);
    EXPECT_EQ(std::string(e.what()).rfind("--api-socket ", 0), 0u);
  }
}

}  // namespace
}  // namespace vmm
