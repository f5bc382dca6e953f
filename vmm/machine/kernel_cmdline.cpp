#include "vmm/machine/kernel_cmdline.hpp"

#include <fmt/format.h>

#include <optional>
#include <vector>

#include "base/memory/layout.hpp"
#include "devices/virtio/mmio_transport.hpp"
#include "vmm/machine/platform.hpp"

namespace vmm {

namespace {

// Splits the kernel's part of a command line into parameters as the kernel does: on spaces,
// except inside double quotes; a "--" ends it (the rest is init's).
std::vector<std::string_view> kernel_parameters(std::string_view cmdline) {
  std::vector<std::string_view> params;
  size_t i = 0;
  while (i < cmdline.size()) {
    while (i < cmdline.size() && (cmdline[i] == ' ' || cmdline[i] == '\t' || cmdline[i] == '\n')) {
      ++i;
    }
    const size_t start = i;
    bool quoted = false;
    while (i < cmdline.size() &&
           (quoted || (cmdline[i] != ' ' && cmdline[i] != '\t' && cmdline[i] != '\n'))) {
      if (cmdline[i] == '"') quoted = !quoted;
      ++i;
    }
    if (i == start) break;
    const std::string_view param = cmdline.substr(start, i - start);
    if (param == "--") break;
    params.push_back(param);
  }
  return params;
}

std::optional<std::string_view> parameter_value(std::string_view param, std::string_view name) {
  if (param.substr(0, name.size()) != name) return std::nullopt;
  if (param.size() == name.size()) return std::string_view{};
  if (param[name.size()] != '=') return std::nullopt;
  std::string_view value = param.substr(name.size() + 1);
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return value;
}

}  // namespace

bool cmdline_has(std::string_view cmdline, std::string_view name) {
  for (const std::string_view param : kernel_parameters(cmdline)) {
    if (parameter_value(param, name)) return true;
  }
  return false;
}

std::string cmdline_value(std::string_view cmdline, std::string_view name) {
  std::string value;
  for (const std::string_view param : kernel_parameters(cmdline)) {
    if (const auto v = parameter_value(param, name)) value = *v;
  }
  return value;
}

std::string compose_cmdline(const MachineConfig& config) {
  if (config.cmdline) return *config.cmdline;
  const std::string user = std::string(kDefaultCmdline) + " " + config.append;
  std::string known;
  if (!config.disks.empty() && !cmdline_has(user, "root")) {
    known += config.disks.front().read_only ? " root=/dev/vda ro" : " root=/dev/vda rw";
  }
  // A command's console is hvc... ports of its own; the kernel's is for trouble: with nowhere to
  // show it, its chatter would only cost UART exits. --console's hvc0 is the guest's console.
  if (config.command && config.serial.mode == SerialConfig::Mode::kNone) known += " quiet";
  if (config.console.enabled) known += " console=hvc0";
  if (cmdline_value(user, "acpi") == "off") {
    for (uint32_t i = 0; i < virtio_device_count(config); ++i) {
      known += fmt::format(" virtio_mmio.device={}@{:#x}:{}",
                           devices::virtio::MmioTransport::kWindowSize,
                           layout::kVirtioMmioStart + i * layout::kVirtioMmioStride, virtio_gsi(i));
    }
  }
  std::string cmdline = kDefaultCmdline + known;
  if (!config.append.empty()) cmdline += " " + config.append;
  return cmdline;
}

}  // namespace vmm
