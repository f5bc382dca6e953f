#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "vmm/machine.hpp"

namespace vmm {

// What the control API does to a machine: the Machine implements it, tests fake it.
class ControlTarget {
 public:
  virtual ~ControlTarget() = default;
  virtual MachineState state() const = 0;
  // Wall time since start() (paused time included); 0 before it.
  virtual std::chrono::milliseconds uptime() const = 0;
  virtual void pause() = 0;
  virtual void resume() = 0;
  virtual void stop() = 0;
  // Machine::snapshot.
  virtual void snapshot(const std::string& path, bool stay_paused) = 0;
  // Machine::config: a copy, as other threads may change its rate limits.
  virtual MachineConfig config() const = 0;
  // Machine::metrics; a target without counters (a test's fake) reports none.
  virtual MachineMetrics metrics() const { return {}; }
  // Machine::set_disk_rate_limit and set_net_rate_limits; a target without devices refuses.
  virtual void set_disk_rate_limit(size_t index, const RateLimitConfig& limit);
  virtual void set_net_rate_limits(size_t index, const RateLimitConfig& rx,
                                   const RateLimitConfig& tx);
};

// A request line longer than this (without its '\n') is refused and its client disconnected.
inline constexpr size_t kMaxControlRequestBytes = 64 * 1024;

// The control protocol: one JSON object per line each way. `line` is one request without its
// '\n'; the result is one response without its '\n' ({"ok":true,...} or {"ok":false,"error":...}).
// Never throws: anything a client sends gets an answer.
//   {"command":"status"}  -> {"ok":true,"state":"running","uptime_ms":1234}
//   {"command":"pause"}, "resume", "stop" -> {"ok":true,"state":"paused"}
//   {"command":"config"}  -> {"ok":true,"config":{...}}
//   {"command":"snapshot","path":DIR[,"paused":true]} -> {"ok":true,"state":"running","path":DIR}
//   {"command":"set-rate-limit","device":"disk0","bw":10485760,"iops":"1k",...}
//       ->
//       {"ok":true,"device":"disk0","rate_limit":{"bw":..,"bw_burst":..,"iops":..,"iops_burst":..}}
//       a disk's keys bw, bw_burst, iops, iops_burst; a NIC's ("net0") the same after rx_ and tx_;
//       numbers or sizes ("4M"); the keys given replace the current values, 0 is unlimited (a
//       rate) or one second's worth (a burst)
//   {"command":"metrics"} -> {"ok":true,"uptime_ms":..,"event_loop":{"longest_handler_us":..,
//       "longest_handler_fd":..},"devices":{"disk0":{"requests":..,"bytes":..,"errors":..,
//       "rate_limit_waits":..},...},"vcpus":[{"id":0,"exits":{"io":..,"mmio":..}},...]}
std::string handle_control_request(std::string_view line, ControlTarget& target);
// The "metrics" command's response for `metrics` (also the C API's vmm_machine_metrics).
std::string metrics_line(const MachineMetrics& metrics);
// The error response for a line over kMaxControlRequestBytes.
std::string oversized_request_response();

const char* state_name(MachineState state);

}  // namespace vmm
