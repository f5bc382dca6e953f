// The control socket, as a client plays it: the bytes a client sends, in reads of any size,
// through ControlSession (the line framing, the 64 KiB bound, blank lines) into
// handle_control_request against a fake machine whose config holds fuzzed strings (any bytes,
// UTF-8 or not) and whose operations fail when the fuzzer says so.
//
// Checked after every read: the session answers each non-blank request line exactly once, in
// whole lines, each a JSON object with a boolean "ok" (and an "error" string when false), with no
// '\n' inside; it never holds more than kMaxControlRequestBytes of an unfinished line, and holds
// exactly the bytes since the last '\n'; a line over the bound gets one refusal, after which the
// session answers nothing.
//
// Input: the config's strings (u8 length, then bytes; kernel, initrd, cmdline, a disk's path and
// serial, a tap, the console file, the API socket), then ops, each a u8 kind:
//   0 kChunk    u16 length, bytes: one read
//   1 kRequest  u8 which (kRequests below): a well-formed request line, so the fuzzer needn't
//               find the JSON itself
//   2 kRun      u8 byte, u32 count (mod 2 * kMaxControlRequestBytes + 2): one read of a run
//   3 kMachine  u8: the fake machine's state (low 2 bits) and whether its operations throw
//   4 kSplit    u8 piece, u16 length, bytes: the same bytes as several reads of `piece + 1` bytes

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/util/error.hpp"
#include "tests/fuzz/fuzz_guest.hpp"
#include "vmm/machine/control_socket.hpp"

namespace vmm::fuzz {
namespace {

using nlohmann::json;

enum Op : uint8_t { kChunk, kRequest, kRun, kMachine, kSplit, kOpCount };

constexpr std::array<std::string_view, 12> kRequests = {
    R"({"command":"status"})",
    R"({"command":"pause"})",
    R"({"command":"resume"})",
    R"({"command":"stop"})",
    R"({"command":"config"})",
    R"({"command":"snapshot","path":"/snap"})",
    R"({"command":"snapshot","path":"/snap","paused":true})",
    R"({"command":"snapshot","path":"","paused":1})",
    R"({"command":"nope"})",
    R"({"command":7})",
    R"([1,2,3])",
    " \t\r",
};

// A machine as the protocol sees it; what it does when asked is the fuzzer's choice.
class FuzzTarget : public ControlTarget {
 public:
  MachineState state() const override { return state_; }
  std::chrono::milliseconds uptime() const override { return std::chrono::milliseconds(42); }
  void pause() override { act(MachineState::kPaused); }
  void resume() override { act(MachineState::kRunning); }
  void stop() override { act(MachineState::kStopped); }
  void snapshot(const std::string& path, bool stay_paused) override {
    if (failing_) fail("snapshot {}: No space left on device\n(and a second line)", path);
    if (stay_paused) state_ = MachineState::kPaused;
  }
  MachineConfig config() const override { return config_; }

  void set(uint8_t how) {
    state_ = static_cast<MachineState>(how & 3);
    failing_ = (how & 4) != 0;
  }
  MachineConfig config_;

 private:
  void act(MachineState next) {
    if (failing_) fail("the machine has stopped");
    state_ = next;
  }
  MachineState state_ = MachineState::kRunning;
  bool failing_ = false;
};

std::string read_string(Reader& in) {
  const auto bytes = in.bytes(in.u8());
  return {bytes.begin(), bytes.end()};
}

void read_config(Reader& in, MachineConfig& config) {
  config.kernel_path = read_string(in);
  config.initrd_path = read_string(in);
  config.cmdline = read_string(in);
  config.disks.push_back(DiskConfig{});
  config.disks.back().path = read_string(in);
  config.disks.back().serial = read_string(in);
  config.nets.push_back(NetConfig{});
  config.nets.back().tap = read_string(in);
  config.serial.mode = SerialConfig::Mode::kFile;
  config.serial.path = read_string(in);
  config.api_socket = read_string(in);
}

// What the session must have done, worked out byte by byte, apart from its framer.
class Client {
 public:
  explicit Client(ControlSession& session) : session_(session) {}

  void send(std::string_view bytes) {
    const bool was_refused = refused_;
    size_t expected = 0;
    for (const char c : bytes) {
      if (refused_) break;
      if (c == '\n') {
        if (!blank_) ++expected;
        pending_ = 0;
        blank_ = true;
        continue;
      }
      if (++pending_ > kMaxControlRequestBytes) {
        refused_ = true;
        ++expected;  // the refusal
      }
      if (c != ' ' && c != '\t' && c != '\r') blank_ = false;
    }

    const bool kept = session_.receive(bytes);
    VMM_FUZZ_CHECK(kept == !refused_, "receive() returned %d for a client refused: %d", kept,
                   refused_);
    VMM_FUZZ_CHECK(session_.buffered_input() <= kMaxControlRequestBytes,
                   "%zu bytes of an unfinished line held", session_.buffered_input());
    VMM_FUZZ_CHECK(session_.buffered_input() == (refused_ ? 0 : pending_),
                   "%zu bytes held, %zu since the last newline", session_.buffered_input(),
                   pending_);
    check_responses(expected, refused_ && !was_refused);
  }

 private:
  void check_responses(size_t expected, bool ends_with_refusal) {
    std::string& out = session_.output();
    VMM_FUZZ_CHECK(out.empty() || out.back() == '\n', "output ends inside a line: %s", out.c_str());
    size_t lines = 0;
    size_t start = 0;
    json last;
    while (start < out.size()) {
      const size_t end = out.find('\n', start);
      const std::string_view line(out.data() + start, end - start);
      last = json::parse(line.begin(), line.end(), nullptr, false);
      VMM_FUZZ_CHECK(last.is_object(), "response %zu is not a JSON object: %.*s", lines,
                     static_cast<int>(line.size()), line.data());
      const auto ok = last.find("ok");
      VMM_FUZZ_CHECK(ok != last.end() && ok->is_boolean(), "no boolean \"ok\" in %.*s",
                     static_cast<int>(line.size()), line.data());
      if (!ok->get<bool>()) {
        const auto error = last.find("error");
        VMM_FUZZ_CHECK(error != last.end() && error->is_string(), "no \"error\" in %.*s",
                       static_cast<int>(line.size()), line.data());
      }
      ++lines;
      start = end + 1;
    }
    VMM_FUZZ_CHECK(lines == expected, "%zu responses to %zu requests", lines, expected);
    if (ends_with_refusal) {
      VMM_FUZZ_CHECK(last["error"].get<std::string>().find("longer than") != std::string::npos,
                     "the last response is not the refusal");
    }
    out.clear();  // sent
  }

  ControlSession& session_;
  size_t pending_ = 0;  // bytes since the last '\n'
  bool blank_ = true;   // and all of them blanks
  bool refused_ = false;
};

void run(Reader& in) {
  FuzzTarget target;
  read_config(in, target.config_);
  ControlSession session(target);
  Client client(session);
  while (!in.empty()) {
    switch (in.u8() % kOpCount) {
      case kChunk: {
        const auto bytes = in.bytes(in.u16());
        client.send({reinterpret_cast<const char*>(bytes.data()), bytes.size()});
        break;
      }
      case kRequest: client.send(std::string(kRequests[in.u8() % kRequests.size()]) + "\n"); break;
      case kRun: {
        const char byte = static_cast<char>(in.u8());
        client.send(std::string(in.u32() % (2 * kMaxControlRequestBytes + 2), byte));
        break;
      }
      case kMachine: target.set(in.u8()); break;
      case kSplit: {
        const size_t piece = size_t{in.u8()} + 1;
        const auto bytes = in.bytes(in.u16());
        const std::string_view all(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        for (size_t at = 0; at < all.size(); at += piece) client.send(all.substr(at, piece));
        break;
      }
    }
  }
}

}  // namespace
}  // namespace vmm::fuzz

VMM_FUZZ_TARGET(vmm::fuzz::run)
