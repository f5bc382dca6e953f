#include "vmm/machine/control_protocol.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/util/error.hpp"

namespace vmm {
namespace {

using nlohmann::json;

// A machine as the protocol sees it: records what it was asked to do.
class FakeTarget : public ControlTarget {
 public:
  MachineState state() const override { return state_; }
  std::chrono::milliseconds uptime() const override { return std::chrono::milliseconds(1234); }
  void pause() override {
    if (state_ != MachineState::kRunning && state_ != MachineState::kPaused) {
      fail("the machine has stopped");
    }
    state_ = MachineState::kPaused;
  }
  void resume() override { state_ = MachineState::kRunning; }
  void stop() override { state_ = MachineState::kStopped; }
  void snapshot(const std::string& path, bool stay_paused) override {
    if (path == "/unwritable") fail("snapshot /unwritable: Permission denied");
    snapshots_.emplace_back(path, stay_paused);
    if (stay_paused) state_ = MachineState::kPaused;
  }
  MachineConfig config() const override { return config_; }
  MachineMetrics metrics() const override { return metrics_; }
  void set_disk_rate_limit(size_t index, const RateLimitConfig& limit) override {
    config_.disks.at(index).rate_limit = limit;
  }
  void set_net_rate_limits(size_t index, const RateLimitConfig& rx,
                           const RateLimitConfig& tx) override {
    config_.nets.at(index).rx_rate_limit = rx;
    config_.nets.at(index).tx_rate_limit = tx;
  }

  MachineState state_ = MachineState::kRunning;
  MachineConfig config_;
  MachineMetrics metrics_;
  std::vector<std::pair<std::string, bool>> snapshots_;
};

json respond(std::string_view line, FakeTarget& target) {
  const std::string response = handle_control_request(line, target);
  EXPECT_EQ(response.find('\n'), std::string::npos) << response;
  json parsed = json::parse(response, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << response;
  return parsed;
}

void expect_error(std::string_view line, const std::string& fragment) {
  FakeTarget target;
  const json response = respond(line, target);
  EXPECT_EQ(response["ok"], false) << line;
  ASSERT_TRUE(response["error"].is_string()) << line;
  EXPECT_NE(response["error"].get<std::string>().find(fragment), std::string::npos)
      << response["error"];
  EXPECT_EQ(target.state_, MachineState::kRunning) << "a bad request changed the machine";
}

TEST(ControlProtocol, SnapshotWritesTheDirectoryAndResumesUnlessAskedToStayPaused) {
  FakeTarget target;
  EXPECT_EQ(respond(R"({"command":"snapshot","path":"/snap/a"})", target),
            json::parse(R"({"ok":true,"state":"running","path":"/snap/a"})"));
  EXPECT_EQ(respond(R"({"command":"snapshot","path":"/snap/b","paused":true})", target),
            json::parse(R"({"ok":true,"state":"paused","path":"/snap/b"})"));
  const std::vector<std::pair<std::string, bool>> want{{"/snap/a", false}, {"/snap/b", true}};
  EXPECT_EQ(target.snapshots_, want);
  EXPECT_EQ(respond(R"({"command":"snapshot","path":"/unwritable"})", target),
            json::parse(R"({"ok":false,"error":"snapshot /unwritable: Permission denied"})"));
}

TEST(ControlProtocol, SnapshotNeedsAPathAndABooleanPaused) {
  expect_error(R"({"command":"snapshot"})", "snapshot needs \"path\"");
  expect_error(R"({"command":"snapshot","path":""})", "snapshot needs \"path\"");
  expect_error(R"({"command":"snapshot","path":7})", "snapshot needs \"path\"");
  expect_error(R"({"command":"snapshot","path":"/s","paused":"yes"})",
               "\"paused\" must be true or false");
}

TEST(ControlProtocol, StatusReportsStateAndUptime) {
  FakeTarget target;
  EXPECT_EQ(respond(R"({"command":"status"})", target),
            json::parse(R"({"ok":true,"state":"running","uptime_ms":1234})"));
}

TEST(ControlProtocol, PauseResumeStopChangeTheStateAndReportIt) {
  FakeTarget target;
  EXPECT_EQ(respond(R"({"command":"pause"})", target),
            json::parse(R"({"ok":true,"state":"paused"})"));
  EXPECT_EQ(target.state_, MachineState::kPaused);
  EXPECT_EQ(respond(R"( {"command" : "resume"} )", target),
            json::parse(R"({"ok":true,"state":"running"})"));
  EXPECT_EQ(respond(R"({"command":"stop","extra":1})", target),
            json::parse(R"({"ok":true,"state":"stopped"})"));
  EXPECT_EQ(target.state_, MachineState::kStopped);
}

TEST(ControlProtocol, AFailedCommandIsAnErrorResponse) {
  FakeTarget target;
  target.state_ = MachineState::kStopped;
  EXPECT_EQ(respond(R"({"command":"pause"})", target),
            json::parse(R"({"ok":false,"error":"the machine has stopped"})"));
}

TEST(ControlProtocol, ConfigShowsTheWholeConfig) {
  FakeTarget target;
  MachineConfig& c = target.config_;
  c.kernel_path = "/k";
  c.initrd_path = "/i";
  c.cmdline = "console=ttyS0";
  c.cpus = 2;
  c.memory_bytes = 64 << 20;
  c.disks.push_back({"/a.img", true, "s1", DiskConfig::IoEngine::kThreadPool});
  c.nets.push_back({"tap0", std::array<uint8_t, 6>{2, 0, 0, 0, 0, 1}});
  c.nets.push_back({"tap1", std::nullopt});
  c.disks[0].rate_limit = {.bytes_per_second = 1000, .ops_burst = 3};
  c.nets[1].tx_rate_limit = {.ops_per_second = 5};
  c.vsock = VsockConfig{7, "/run/v.sock"};
  c.serial.mode = SerialConfig::Mode::kFile;
  c.serial.path = "/log";
  c.api_socket = "/run/api.sock";
  c.timeout_seconds = 9;
  c.debug_exit = true;
  const json response = respond(R"({"command":"config"})", target);
  EXPECT_EQ(response["ok"], true);
  EXPECT_EQ(response["config"], json::parse(R"({
    "kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0", "cpus": 2,
    "memory_bytes": 67108864,
    "disks": [{"path": "/a.img", "read_only": true, "serial": "s1", "io_engine": "threads",
               "rate_limit": {"bw": 1000, "bw_burst": 0, "iops": 0, "iops_burst": 3}}],
    "nets": [{"tap": "tap0", "mac": "02:00:00:00:00:01",
              "rx_rate_limit": {"bw": 0, "bw_burst": 0, "iops": 0, "iops_burst": 0},
              "tx_rate_limit": {"bw": 0, "bw_burst": 0, "iops": 0, "iops_burst": 0}},
             {"tap": "tap1", "mac": null,
              "rx_rate_limit": {"bw": 0, "bw_burst": 0, "iops": 0, "iops_burst": 0},
              "tx_rate_limit": {"bw": 0, "bw_burst": 0, "iops": 5, "iops_burst": 0}}],
    "vsock": {"guest_cid": 7, "uds_path": "/run/v.sock"},
    "serial": {"mode": "file", "path": "/log"},
    "api_socket": "/run/api.sock", "timeout_seconds": 9, "seccomp": true,
    "debug_exit": true})"));
}

TEST(ControlProtocol, ConfigWithoutOptionalPartsAndWithUnprintableBytes) {
  FakeTarget target;
  target.config_.kernel_path = "/k\xff\xfe";  // not UTF-8: replaced, not a throw
  const json response = respond(R"({"command":"config"})", target);
  EXPECT_EQ(response["config"]["vsock"], json());
  EXPECT_EQ(response["config"]["disks"], json::array());
  EXPECT_EQ(response["config"]["serial"], json::parse(R"({"mode":"stdio"})"));
  EXPECT_EQ(response["config"]["kernel"].get<std::string>().rfind("/k", 0), 0u);
}

TEST(ControlProtocol, MetricsNameEachDeviceAndListEachVcpusExits) {
  FakeTarget target;
  target.metrics_.devices = {{"disk0", 1, 4096, 2, 3}, {"net0", 5, 1500, 0, 0}};
  target.metrics_.vcpus = {{0, {{"io", 7}, {"mmio", 8}}}, {1, {}}};
  target.metrics_.longest_handler = std::chrono::microseconds(20500);
  target.metrics_.longest_handler_fd = 9;
  target.metrics_.uptime = std::chrono::milliseconds(1234);
  EXPECT_EQ(respond(R"({"command":"metrics"})", target), json::parse(R"({
    "ok": true, "uptime_ms": 1234,
    "event_loop": {"longest_handler_us": 20500, "longest_handler_fd": 9},
    "devices": {
      "disk0": {"requests": 1, "bytes": 4096, "errors": 2, "rate_limit_waits": 3},
      "net0": {"requests": 5, "bytes": 1500, "errors": 0, "rate_limit_waits": 0}},
    "vcpus": [{"id": 0, "exits": {"io": 7, "mmio": 8}}, {"id": 1, "exits": {}}]})"));
}

TEST(ControlProtocol, MetricsOfAMachineWithoutDevicesOrVcpusAreEmptyNotNull) {
  FakeTarget target;
  const json response = respond(R"({"command":"metrics"})", target);
  EXPECT_TRUE(response["devices"].is_object());
  EXPECT_TRUE(response["vcpus"].is_array());
  EXPECT_EQ(response["event_loop"]["longest_handler_fd"], -1);
}

TEST(ControlProtocol, MalformedRequestsGetErrors) {
  expect_error("", "not JSON");
  expect_error("{", "not JSON");
  expect_error(R"({"command":"status"} trailing)", "not JSON");
  expect_error(std::string_view("\x00\x01\xff\xfe garbage", 12), "not JSON");
  expect_error(R"({"command":"st\xffus"})", "not JSON");  // invalid UTF-8 inside a string
  expect_error(R"(["status"])", "a request is a JSON object");
  expect_error(R"("status")", "a request is a JSON object");
  expect_error("42", "a request is a JSON object");
  expect_error("{}", "missing \"command\"");
  expect_error(R"({"cmd":"status"})", "missing \"command\"");
  expect_error(R"({"command":1})", "\"command\" must be a string");
  expect_error(R"({"command":null})", "\"command\" must be a string");
  expect_error(R"({"command":["pause"]})", "\"command\" must be a string");
  expect_error(R"({"command":"reboot"})", "unknown command \"reboot\"");
  expect_error(R"({"command":"PAUSE"})", "unknown command");
}

TEST(ControlProtocol, DeeplyNestedOrHugeInputIsAnErrorNotACrash) {
  expect_error(std::string(100000, '['), "not JSON");
  expect_error(std::string(30000, '[') + std::string(30000, ']'), "a request is a JSON object");
  const std::string big = R"({"command":")" + std::string(kMaxControlRequestBytes, 'x') + R"("})";
  expect_error(big, "unknown command");
}

TEST(ControlProtocol, OversizedResponseIsOneErrorLine) {
  const json response = json::parse(oversized_request_response());
  EXPECT_EQ(response["ok"], false);
  EXPECT_NE(response["error"].get<std::string>().find("65536"), std::string::npos);
}

TEST(ControlProtocol, StateNames) {
  EXPECT_STREQ(state_name(MachineState::kCreated), "created");
  EXPECT_STREQ(state_name(MachineState::kRunning), "running");
  EXPECT_STREQ(state_name(MachineState::kPaused), "paused");
  EXPECT_STREQ(state_name(MachineState::kStopped), "stopped");
}

TEST(ControlProtocol, SetRateLimitChangesTheKeysGivenOfADisk) {
  FakeTarget target;
  target.config_.disks.resize(2);
  target.config_.disks[1].rate_limit = {.bytes_per_second = 100, .ops_per_second = 7};
  EXPECT_EQ(respond(R"({"command":"set-rate-limit","device":"disk1","bw":"4M","bw_burst":65536})",
                    target),
            json::parse(R"({"ok":true,"device":"disk1","rate_limit":)"
                        R"({"bw":4194304,"bw_burst":65536,"iops":7,"iops_burst":0}})"));
  EXPECT_EQ(
      target.config_.disks[1].rate_limit,
      (RateLimitConfig{.bytes_per_second = 4 << 20, .bytes_burst = 65536, .ops_per_second = 7}));
  // 0 lifts a limit; "config" shows the limits.
  respond(R"({"command":"set-rate-limit","device":"disk1","iops":0})", target);
  const json config = respond(R"({"command":"config"})", target);
  EXPECT_EQ(config["config"]["disks"][1]["rate_limit"],
            json::parse(R"({"bw":4194304,"bw_burst":65536,"iops":0,"iops_burst":0})"));
  EXPECT_EQ(target.config_.disks[0].rate_limit, RateLimitConfig{});
}

TEST(ControlProtocol, SetRateLimitChangesANicsReceiveAndTransmitSides) {
  FakeTarget target;
  target.config_.nets.resize(1);
  const json response = respond(
      R"({"command":"set-rate-limit","device":"net0","rx_bw":1000,"tx_iops":50,"tx_iops_burst":5})",
      target);
  EXPECT_EQ(response["ok"], true) << response;
  EXPECT_EQ(target.config_.nets[0].rx_rate_limit, RateLimitConfig{.bytes_per_second = 1000});
  EXPECT_EQ(target.config_.nets[0].tx_rate_limit,
            (RateLimitConfig{.ops_per_second = 50, .ops_burst = 5}));
  EXPECT_EQ(response["tx_rate_limit"]["iops"], 50);
}

TEST(ControlProtocol, SetRateLimitRefusesUnknownDevicesKeysAndValues) {
  FakeTarget target;
  target.config_.disks.resize(1);
  target.config_.nets.resize(1);
  auto error_of = [&](std::string_view line) {
    const json response = respond(line, target);
    EXPECT_EQ(response["ok"], false) << line;
    return response["error"].get<std::string>();
  };
  EXPECT_EQ(error_of(R"({"command":"set-rate-limit"})"),
            "set-rate-limit needs \"device\": a disk (\"disk0\") or a NIC (\"net0\")");
  for (const char* device : {"disk1", "net1", "vsock", "disk", "disk0x", "disk01x", "disk-1"}) {
    EXPECT_NE(
        error_of(fmt::format(R"({{"command":"set-rate-limit","device":"{}","bw":1}})", device))
            .find(fmt::format("no device \"{}\" with a rate limit (disk0..disk0, net0..net0)",
                              device)),
        std::string::npos)
        << device;
  }
  EXPECT_EQ(error_of(R"({"command":"set-rate-limit","device":"disk0","rx_bw":1})"),
            "unknown key \"rx_bw\" for disk0 (use bw=, bw_burst=, iops=, iops_burst=)");
  EXPECT_NE(error_of(R"({"command":"set-rate-limit","device":"net0","bw":1})")
                .find("unknown key \"bw\" for net0 (use rx_bw=, "),
            std::string::npos);
  for (const char* value : {"-1", "1.5", "\"fast\"", "true", "null"}) {
    EXPECT_EQ(
        error_of(fmt::format(R"({{"command":"set-rate-limit","device":"disk0","bw":{}}})", value)),
        "\"bw\" must be a count or a size such as \"4M\" (0: unlimited)")
        << value;
  }
  EXPECT_EQ(target.config_.disks[0].rate_limit, RateLimitConfig{});  // nothing changed
}

}  // namespace
}  // namespace vmm
