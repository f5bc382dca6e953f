#include "vmm/machine/control_protocol.hpp"

#include <fmt/format.h>

#include <exception>

#include <nlohmann/json.hpp>

#include "base/util/error.hpp"
#include "base/util/mac_address.hpp"
#include "base/util/size.hpp"
#include "vmm/machine/kernel_cmdline.hpp"
#include "vmm/machine/rate_limit_keys.hpp"

namespace vmm {

namespace {

using nlohmann::json;

// Paths and messages may hold bytes that aren't UTF-8: they are replaced, never a throw.
std::string to_line(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string error_response(const std::string& message) {
  return to_line(json{{"ok", false}, {"error", message}});
}

const char* serial_mode_name(SerialConfig::Mode mode) {
  switch (mode) {
    case SerialConfig::Mode::kStdio: return "stdio";
    case SerialConfig::Mode::kFile: return "file";
    case SerialConfig::Mode::kFd: return "fd";
    case SerialConfig::Mode::kCallback: return "callback";
    case SerialConfig::Mode::kNone: return "none";
  }
  return "none";
}

const char* io_engine_name(DiskConfig::IoEngine engine) {
  switch (engine) {
    case DiskConfig::IoEngine::kAuto: return "auto";
    case DiskConfig::IoEngine::kIoUring: return "io_uring";
    case DiskConfig::IoEngine::kThreadPool: return "threads";
  }
  return "auto";
}

json state_response(const ControlTarget& target) {
  return json{{"ok", true}, {"state", state_name(target.state())}};
}

json rate_limit_to_json(const RateLimitConfig& limit) {
  json fields = json::object();
  for (const auto& [name, field] : kRateLimitFields) fields[std::string(name)] = limit.*field;
  return fields;
}

// "set-rate-limit": the keys given (after `prefix`) replace `limit`'s values; false if `key`
// names none of them.
bool apply_rate_limit_key(const std::string& key, const json& value, std::string_view prefix,
                          RateLimitConfig& limit) {
  std::optional<uint64_t> amount;
  if (value.is_number_unsigned()) amount = value.get<uint64_t>();
  if (value.is_string()) amount = parse_size(value.get_ref<const std::string&>());
  if (!set_rate_limit_field(limit, prefix, key, amount.value_or(0))) return false;
  if (!amount) fail("\"{}\" must be a count or a size such as \"4M\" (0: unlimited)", key);
  return true;
}

// The index in "disk3" after `kind` "disk", if it is below `count`.
std::optional<size_t> device_index(const std::string& device, std::string_view kind, size_t count) {
  if (!device.starts_with(kind) || device.size() == kind.size()) return std::nullopt;
  size_t index = 0;
  for (const char digit : std::string_view(device).substr(kind.size())) {
    if (digit < '0' || digit > '9' || index >= count) return std::nullopt;
    index = index * 10 + static_cast<size_t>(digit - '0');
  }
  if (index >= count) return std::nullopt;
  return index;
}

json set_rate_limit(const json& request, ControlTarget& target) {
  const auto device = request.find("device");
  if (device == request.end() || !device->is_string()) {
    fail("set-rate-limit needs \"device\": a disk (\"disk0\") or a NIC (\"net0\")");
  }
  const std::string& name = device->get_ref<const std::string&>();
  const MachineConfig& config = target.config();
  auto apply = [&](std::initializer_list<std::pair<std::string_view, RateLimitConfig*>> limits,
                   const std::string& keys) {
    for (const auto& [key, value] : request.items()) {
      if (key == "command" || key == "device") continue;
      bool known = false;
      for (const auto& [prefix, limit] : limits) {
        known = known || apply_rate_limit_key(key, value, prefix, *limit);
      }
      if (!known) fail("unknown key \"{}\" for {} (use {})", key, name, keys);
    }
  };
  if (const auto disk = device_index(name, "disk", config.disks.size())) {
    RateLimitConfig limit = config.disks[*disk].rate_limit;
    apply({{"", &limit}}, rate_limit_keys(""));
    target.set_disk_rate_limit(*disk, limit);
    return json{{"ok", true}, {"device", name}, {"rate_limit", rate_limit_to_json(limit)}};
  }
  if (const auto net = device_index(name, "net", config.nets.size())) {
    RateLimitConfig rx = config.nets[*net].rx_rate_limit;
    RateLimitConfig tx = config.nets[*net].tx_rate_limit;
    apply({{"rx_", &rx}, {"tx_", &tx}}, rate_limit_keys("rx_") + ", " + rate_limit_keys("tx_"));
    target.set_net_rate_limits(*net, rx, tx);
    return json{{"ok", true},
                {"device", name},
                {"rx_rate_limit", rate_limit_to_json(rx)},
                {"tx_rate_limit", rate_limit_to_json(tx)}};
  }
  fail("no device \"{}\" with a rate limit (disk0..disk{}, net0..net{})", name,
       static_cast<int64_t>(config.disks.size()) - 1, static_cast<int64_t>(config.nets.size()) - 1);
}

// The machine's config as the "config" command shows it.
json config_to_json(const MachineConfig& config) {
  json disks = json::array();
  for (const DiskConfig& disk : config.disks) {
    disks.push_back({{"path", disk.path},
                     {"read_only", disk.read_only},
                     {"serial", disk.serial},
                     {"io_engine", io_engine_name(disk.io_engine)},
                     {"rate_limit", rate_limit_to_json(disk.rate_limit)}});
  }
  json nets = json::array();
  for (const NetConfig& net : config.nets) {
    nets.push_back({{"tap", net.tap},
                    {"mac", net.mac ? json(format_mac(*net.mac)) : json()},
                    {"rx_rate_limit", rate_limit_to_json(net.rx_rate_limit)},
                    {"tx_rate_limit", rate_limit_to_json(net.tx_rate_limit)}});
  }
  json serial = {{"mode", serial_mode_name(config.serial.mode)}};
  if (config.serial.mode == SerialConfig::Mode::kFile) serial["path"] = config.serial.path;
  if (config.serial.mode == SerialConfig::Mode::kFd) serial["fd"] = config.serial.fd;
  json vsock;
  if (config.vsock) {
    vsock = {{"guest_cid", config.vsock->guest_cid}, {"uds_path", config.vsock->uds_path}};
  }
  return json{{"kernel", config.kernel_path},
              {"initrd", config.initrd_path},
              {"cmdline", compose_cmdline(config)},
              {"cpus", config.cpus},
              {"memory_bytes", config.memory_bytes},
              {"disks", std::move(disks)},
              {"nets", std::move(nets)},
              {"vsock", std::move(vsock)},
              {"serial", std::move(serial)},
              {"api_socket", config.api_socket},
              {"timeout_seconds", config.timeout_seconds},
              {"seccomp", config.seccomp},
              {"debug_exit", config.debug_exit}};
}

// The "metrics" command's answer: devices by name, so a script reads metrics.devices.disk0.
json metrics_to_json(const MachineMetrics& metrics) {
  json devices = json::object();
  for (const MachineMetrics::Device& device : metrics.devices) {
    devices[device.name] = {{"requests", device.requests},
                            {"bytes", device.bytes},
                            {"errors", device.errors},
                            {"rate_limit_waits", device.rate_limit_waits}};
  }
  json vcpus = json::array();
  for (const MachineMetrics::Vcpu& vcpu : metrics.vcpus) {
    vcpus.push_back({{"id", vcpu.id}, {"exits", vcpu.exits}});
  }
  return json{{"ok", true},
              {"uptime_ms", metrics.uptime.count()},
              {"event_loop",
               {{"longest_handler_us", metrics.longest_handler.count()},
                {"longest_handler_fd", metrics.longest_handler_fd}}},
              {"devices", std::move(devices)},
              {"vcpus", std::move(vcpus)}};
}

}  // namespace

std::string metrics_line(const MachineMetrics& metrics) {
  return to_line(metrics_to_json(metrics));
}

void ControlTarget::set_disk_rate_limit(size_t index, const RateLimitConfig& /*limit*/) {
  fail("no disk{}", index);
}

void ControlTarget::set_net_rate_limits(size_t index, const RateLimitConfig& /*rx*/,
                                        const RateLimitConfig& /*tx*/) {
  fail("no net{}", index);
}

const char* state_name(MachineState state) {
  switch (state) {
    case MachineState::kCreated: return "created";
    case MachineState::kRunning: return "running";
    case MachineState::kPaused: return "paused";
    case MachineState::kStopped: return "stopped";
  }
  return "stopped";
}

std::string oversized_request_response() {
  return error_response(
      fmt::format("request longer than {} bytes; closing the connection", kMaxControlRequestBytes));
}

std::string handle_control_request(std::string_view line, ControlTarget& target) {
  const json request = json::parse(line.begin(), line.end(), nullptr, false);
  if (request.is_discarded()) return error_response("not JSON (one object per line)");
  if (!request.is_object()) return error_response("a request is a JSON object");
  const auto command = request.find("command");
  if (command == request.end()) return error_response("missing \"command\"");
  if (!command->is_string()) return error_response("\"command\" must be a string");
  const std::string& name = command->get_ref<const std::string&>();
  try {
    if (name == "status") {
      json response = state_response(target);
      response["uptime_ms"] = target.uptime().count();
      return to_line(response);
    }
    if (name == "pause") {
      target.pause();
      return to_line(state_response(target));
    }
    if (name == "resume") {
      target.resume();
      return to_line(state_response(target));
    }
    if (name == "stop") {
      target.stop();
      return to_line(state_response(target));
    }
    if (name == "snapshot") {
      const auto path = request.find("path");
      if (path == request.end() || !path->is_string() ||
          path->get_ref<const std::string&>().empty()) {
        return error_response("snapshot needs \"path\": the directory to write");
      }
      const auto paused = request.find("paused");
      if (paused != request.end() && !paused->is_boolean()) {
        return error_response("\"paused\" must be true or false");
      }
      const std::string& dir = path->get_ref<const std::string&>();
      target.snapshot(dir, paused != request.end() && paused->get<bool>());
      json response = state_response(target);
      response["path"] = dir;
      return to_line(response);
    }
    if (name == "config") {
      return to_line(json{{"ok", true}, {"config", config_to_json(target.config())}});
    }
    if (name == "metrics") return metrics_line(target.metrics());
    if (name == "set-rate-limit") return to_line(set_rate_limit(request, target));
  } catch (const std::exception& e) {
    return error_response(e.what());
  }
  return error_response(
      fmt::format("unknown command \"{}\" (status, pause, resume, stop, snapshot, config, metrics, "
                  "set-rate-limit)",
                  name));
}

}  // namespace vmm
