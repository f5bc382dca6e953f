// The control socket of the real vmm binary (--api-socket): a test client drives a running guest
// through status, pause, resume, config, bad requests and stop.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/util/unique_fd.hpp"
#include "tests/integration/guest_run.hpp"

namespace vmm::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A connection to a control socket, retried until the server is up (or the deadline).
class Client {
 public:
  explicit Client(const std::string& path) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    while (std::chrono::steady_clock::now() < deadline) {
      fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) {
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    fd_.reset();
  }
  bool connected() const { return fd_.valid(); }

  void send(const std::string& bytes) {
    std::string_view rest = bytes;
    while (!rest.empty()) {
      const ssize_t n = ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      rest.remove_prefix(static_cast<size_t>(n));
    }
  }
  // The next response line, "" at EOF or after 30 s.
  std::string read_line() {
    std::string line;
    while (true) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 30000) <= 0) return line;
      char c;
      if (::recv(fd_.get(), &c, 1, 0) <= 0 || c == '\n') return line;
      line.push_back(c);
    }
  }
  json request(const std::string& line) {
    send(line + "\n");
    return json::parse(read_line(), nullptr, false);
  }

 private:
  UniqueFd fd_;
};

class ApiSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
    char pattern[] = "/tmp/vmm-api-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_ = dir_ + "/api.sock";
  }
  void TearDown() override {
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  std::future<ProcessResult> start_vmm(const std::string& cmdline) {
    GuestRun run{.kernel = test_guest_image("hello"),
                 .cmdline = cmdline,
                 .extra_args = {"--api-socket", socket_}};
    return std::async(std::launch::async, [run] { return run_vmm(run); });
  }

  std::string dir_;
  std::string socket_;
};

TEST_F(ApiSocket, DrivesARunningGuest) {
  auto vmm = start_vmm("console=ttyS0 tick");
  Client client(socket_);
  ASSERT_TRUE(client.connected()) << describe(vmm.get());

  json status = client.request(R"({"command":"status"})");
  EXPECT_EQ(status["ok"], true) << status;
  EXPECT_EQ(status["state"], "running") << status;
  EXPECT_TRUE(status["uptime_ms"].is_number_unsigned()) << status;

  EXPECT_EQ(client.request(R"({"command":"pause"})"),
            json::parse(R"({"ok":true,"state":"paused"})"));
  EXPECT_EQ(client.request(R"({"command":"status"})")["state"], "paused");
  // A second client is served while the machine is paused.
  Client other(socket_);
  EXPECT_EQ(other.request(R"({"command":"status"})")["state"], "paused");
  EXPECT_EQ(client.request(R"({"command":"resume"})"),
            json::parse(R"({"ok":true,"state":"running"})"));

  const json config = client.request(R"({"command":"config"})");
  EXPECT_EQ(config["ok"], true) << config;
  EXPECT_EQ(config["config"]["kernel"], test_guest_image("hello"));
  EXPECT_EQ(config["config"]["cmdline"], "console=ttyS0 tick");
  EXPECT_EQ(config["config"]["cpus"], 1);
  EXPECT_EQ(config["config"]["memory_bytes"], 64 << 20);
  EXPECT_EQ(config["config"]["api_socket"], socket_);
  EXPECT_EQ(config["config"]["serial"]["mode"], "stdio");

  for (const char* bad : {"not json", "{\"command\":\"explode\"}", "{}", "{\"command\":7}", "[]"}) {
    const json response = client.request(bad);
    EXPECT_EQ(response["ok"], false) << bad << " -> " << response;
    EXPECT_TRUE(response["error"].is_string()) << response;
  }

  EXPECT_EQ(client.request(R"({"command":"stop"})"),
            json::parse(R"({"ok":true,"state":"stopped"})"));
  const ProcessResult r = vmm.get();
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 5) << describe(r);
  EXPECT_FALSE(std::filesystem::exists(socket_)) << "the socket file outlived vmm";
}

TEST_F(ApiSocket, AHugeLineIsRefusedAndTheMachineRunsOn) {
  auto vmm = start_vmm("console=ttyS0 spin");
  Client client(socket_);
  ASSERT_TRUE(client.connected()) << describe(vmm.get());
  client.send(std::string(100 * 1024, '{'));
  const json response = json::parse(client.read_line(), nullptr, false);
  EXPECT_EQ(response["ok"], false) << response;
  Client again(socket_);
  EXPECT_EQ(again.request(R"({"command":"status"})")["state"], "running");
  EXPECT_EQ(again.request(R"({"command":"stop"})")["ok"], true);
  const ProcessResult r = vmm.get();
  EXPECT_EQ(r.exit_status, 5) << describe(r);
}

TEST_F(ApiSocket, ASocketInUseIsRefused) {
  auto first = start_vmm("console=ttyS0 spin");
  Client client(socket_);
  ASSERT_TRUE(client.connected()) << describe(first.get());
  GuestRun second{.kernel = test_guest_image("hello"),
                  .cmdline = "console=ttyS0 exit=0",
                  .extra_args = {"--api-socket", socket_}};
  const ProcessResult r = run_vmm(second);
  EXPECT_EQ(r.exit_status, 1) << describe(r);
  EXPECT_NE(r.err.find("--api-socket " + socket_ + ": in use"), std::string::npos) << describe(r);
  EXPECT_EQ(client.request(R"({"command":"stop"})")["ok"], true);
  EXPECT_EQ(first.get().exit_status, 5);
}

}  // namespace
}  // namespace vmm::testing
