#include "devices/virtio/console.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

namespace {

// Queues 2 and 3 carry control messages; port 0 has 0 and 1, port N 2N + 2 and 2N + 3.
constexpr uint16_t kControlRxQueue = 2;
constexpr uint16_t kControlTxQueue = 3;

uint16_t rx_queue_index(uint32_t port) {
  return static_cast<uint16_t>(port == 0 ? 0 : 2 * port + 2);
}

struct stat stat_fd(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw_errno(what);
  return st;
}

bool is_pipe_or_device(const struct stat& st) {
  return S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
}

}  // namespace

VirtioConsole::VirtioConsole(const GuestMemory& /*memory*/, EventLoop& loop,
                             std::vector<ConsolePort> ports, std::string name)
    : loop_(loop), name_(std::move(name)), staging_(kInputBufferBytes) {
  if (ports.empty() || ports.size() > kMaxPorts) {
    fail("virtio-console {}: {} ports; 1 to {} are supported", name_, ports.size(), kMaxPorts);
  }
  if (std::count_if(ports.begin(), ports.end(), [](const ConsolePort& p) { return p.console; }) >
      1) {
    fail("virtio-console {}: more than one console port", name_);
  }
  std::map<int, size_t> fd_owner;
  for (size_t index = 0; index < ports.size(); ++index) {
    Port port;
    port.config = std::move(ports[index]);
    const ConsolePort& config = port.config;
    const std::string what = fmt::format("virtio-console {}: port {}", name_, index);
    if (config.name.size() > kMaxPortName) {
      fail("{}: a name of {} bytes (at most {})", what, config.name.size(), kMaxPortName);
    }
    for (int fd : {config.output_fd, config.input_fd}) {
      if (fd < 0) continue;
      const auto [it, inserted] = fd_owner.emplace(fd, index);
      if (!inserted && it->second != index)
        fail("{}: fd {} is port {}'s too", what, fd, it->second);
    }
    if (config.output_fd >= 0) {
      if (config.output_callback) fail("{}: both an output fd and an output callback", what);
      const std::string fd_what = fmt::format("{}: output fd {}", what, config.output_fd);
      const struct stat st = stat_fd(config.output_fd, fd_what);
      if (S_ISDIR(st.st_mode)) fail("{}: a directory", fd_what);
      if (is_pipe_or_device(st) && (::fcntl(config.output_fd, F_GETFL) & O_NONBLOCK) == 0) {
        fail("{}: blocking (a pipe or terminal must be O_NONBLOCK: the loop never waits)", fd_what);
      }
      port.output_kind = S_ISSOCK(st.st_mode) ? OutputKind::kSend : OutputKind::kWrite;
    } else if (config.output_callback) {
      port.output_kind = OutputKind::kCallback;
    }
    if (config.input_fd >= 0) {
      const std::string fd_what = fmt::format("{}: input fd {}", what, config.input_fd);
      const struct stat st = stat_fd(config.input_fd, fd_what);
      if (!is_pipe_or_device(st) && !S_ISSOCK(st.st_mode)) {
        fail("{}: not a pipe, terminal or socket (epoll can't watch it)", fd_what);
      }
      port.input_is_socket = S_ISSOCK(st.st_mode);
    }
    ports_.push_back(std::move(port));
  }
}

VirtioConsole::~VirtioConsole() {
  for (const auto& [fd, events] : interest_) loop_.remove(fd);
  for (Port& port : ports_) {
    if (port.tx_chain) std::move(*port.tx_chain).discard();
    if (port.rx_chain) std::move(*port.rx_chain).discard();
  }
}

uint64_t VirtioConsole::features() const {
  return kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc |
         kConsoleFeatureMultiport;
}

std::vector<uint16_t> VirtioConsole::queue_max_sizes() const {
  // Port 0's, the control queues, the other ports'.
  return std::vector<uint16_t>(2 * (ports_.size() + 1), kQueueSize);
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) const {
  const VirtioConsoleConfig config{
      .cols = 0, .rows = 0, .max_nr_ports = static_cast<uint32_t>(ports_.size()), .emerg_wr = 0};
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof(config)) return;
  const size_t bytes = std::min<uint64_t>(data.size(), sizeof(config) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config) + offset, bytes);
}

void VirtioConsole::activate(const Activation& activation) {
  queues_ = activation.queues;
  interrupt_ = activation.interrupt;
  watched_.clear();
  watched_.add_notify_fds(activation.notify_fds, [this](uint16_t queue) { notify(queue); });
  watched_.add(resume_.fd(), EPOLLIN, [this](uint32_t) { on_resume(); });
}

void VirtioConsole::reset(ResetDone done) {
  watched_.clear();
  resume_.consume();
  queues_.clear();
  interrupt_ = nullptr;
  failed_ = false;
  device_ready_ = false;
  control_out_.clear();
  for (uint32_t index = 0; index < ports_.size(); ++index) {
    Port& port = ports_[index];
    // The driver no longer expects the chains back; the output already taken is still written.
    if (port.tx_chain) std::move(*port.tx_chain).discard();
    if (port.rx_chain) std::move(*port.rx_chain).discard();
    port.tx_chain.reset();
    port.rx_chain.reset();
    port.tx_offset = 0;
    port.added = false;
    port.ready = false;
    port.closed_for_guest = false;
    if (std::exchange(port.guest_open, false) && on_guest_open) on_guest_open(index, false);
    update_interest(index);
  }
  // Every write into guest memory happens inside a handler: none is left to wait for.
  done();
}

void VirtioConsole::quiesce(std::chrono::steady_clock::time_point /*deadline*/) {
  fail("virtio-console {}: a machine with a virtio-console can't be snapshotted yet", name_);
}

std::string VirtioConsole::debug_state() const {
  std::string state = fmt::format("{} control messages waiting", control_out_.size());
  for (size_t index = 0; index < ports_.size(); ++index) {
    const Port& port = ports_[index];
    state += fmt::format("; port {}: {}, {} bytes out{}{}, {} bytes in{}", index,
                         port.guest_open ? "open" : "closed", port.output.size(),
                         port.output_blocked ? " (output full)" : "",
                         port.output_failed ? " (output failed)" : "", port.input.size(),
                         port.input_ended ? ", input ended" : "");
  }
  return state;
}

SplitQueue* VirtioConsole::rx_queue(uint32_t port) const {
  return queues_.at(rx_queue_index(port));
}

SplitQueue* VirtioConsole::tx_queue(uint32_t port) const {
  return queues_.at(rx_queue_index(port) + 1u);
}

void VirtioConsole::notify(uint16_t index) {
  if (!active() || failed_ || index >= queues_.size()) return;
  if (index == kControlRxQueue) {
    process_control_rx();
  } else if (index == kControlTxQueue) {
    process_control_tx();
    process_control_rx();
  } else {
    const uint32_t port = index < kControlRxQueue ? 0 : (index - 2u) / 2u;
    if (index % 2 == 0) {
      process_port_rx(port);
    } else {
      process_port_tx(port);
    }
    update_interest(port);
  }
  notify_driver();
}

void VirtioConsole::on_resume() {
  resume_.consume();
  if (!active() || failed_) return;
  process_all();
}

void VirtioConsole::process_all() {
  process_control_tx();
  process_control_rx();
  for (uint32_t port = 0; port < ports_.size(); ++port) {
    process_port_tx(port);
    process_port_rx(port);
    update_interest(port);
  }
  notify_driver();
}

void VirtioConsole::notify_driver() {
  bool any = false;
  // Every queue, so that each one's event index moves on.
  for (SplitQueue* queue : queues_) any = queue->needs_notification() || any;
  if (any) interrupt_->signal_used();
}

void VirtioConsole::check_broken(SplitQueue* queue) {
  if (failed_ || !queue->broken()) return;
  failed_ = true;
  metrics_.count_error();
  spdlog::error("virtio-console {}: {}; the device needs a reset", name_, queue->broken_reason());
  interrupt_->signal_needs_reset();
}

// ---- Control ----

void VirtioConsole::process_control_tx() {
  SplitQueue* queue = queues_[kControlTxQueue];
  for (uint32_t budget = kChainBudget; budget > 0; --budget) {
    auto chain = queue->pop();
    if (!chain) {
      check_broken(queue);
      return;
    }
    VirtioConsoleControl message{};
    if (chain->readable_bytes() != sizeof(message)) {
      ++counters_.control_dropped;
      metrics_.count_error();
      spdlog::debug("virtio-console {}: control chain {} of {} bytes dropped (not {})", name_,
                    chain->head(), chain->readable_bytes(), sizeof(message));
    } else {
      chain->read(0, {reinterpret_cast<uint8_t*>(&message), sizeof(message)});
      handle_control(message);
    }
    queue->add_used(std::move(*chain), 0);
  }
  resume_.signal();
}

void VirtioConsole::handle_control(const VirtioConsoleControl& message) {
  if (message.event == kConsoleDeviceReady) {
    // Linux sends it with the id VIRTIO_CONSOLE_BAD_ID: the id means nothing here.
    if (message.value != 1) {
      spdlog::warn("virtio-console {}: the driver failed to set the device up", name_);
      return;
    }
    if (device_ready_) return drop_control(message, "the device is ready already");
    device_ready_ = true;
    for (uint32_t index = 0; index < ports_.size(); ++index) {
      if (ports_[index].removed) continue;
      ports_[index].added = true;
      queue_control(index, kConsoleDeviceAdd, 1);
    }
    return;
  }
  if (message.event != kConsolePortReady && message.event != kConsolePortOpen) {
    return drop_control(message, "an event the driver does not send");
  }
  if (message.id >= ports_.size()) return drop_control(message, "no such port");
  Port& port = ports_[message.id];
  if (!port.added) return drop_control(message, "a port not added yet");
  if (message.value > 1) return drop_control(message, "a value other than 0 or 1");
  if (message.event == kConsolePortReady) {
    if (message.value == 0) {
      spdlog::warn("virtio-console {}: the driver failed to add port {}", name_, message.id);
      return;
    }
    if (port.ready) return drop_control(message, "the port is ready already");
    port.ready = true;
    if (port.config.console) queue_control(message.id, kConsoleConsolePort, 1);
    if (!port.config.name.empty()) queue_control(message.id, kConsolePortName, 1, port.config.name);
    // An input that ended in the driver's previous session stays at its end.
    port.closed_for_guest = port.input_ended && port.output_kind == OutputKind::kNone;
    queue_control(message.id, kConsolePortOpen, port.closed_for_guest ? 0 : 1);
    return;
  }
  if (!port.ready) return drop_control(message, "a port not ready yet");
  const bool open = message.value == 1;
  if (open == port.guest_open) return;
  port.guest_open = open;
  if (on_guest_open) on_guest_open(message.id, open);
  process_port_rx(message.id);
  update_interest(message.id);
}

void VirtioConsole::drop_control(const VirtioConsoleControl& message, const char* why) {
  ++counters_.control_dropped;
  metrics_.count_error();
  spdlog::debug("virtio-console {}: control message (port {}, event {}, value {}) dropped: {}",
                name_, message.id, message.event, message.value, why);
}

void VirtioConsole::queue_control(uint32_t port, uint16_t event, uint16_t value,
                                  std::string_view payload) {
  if (control_out_.size() >= kMaxControlOut) {
    ++counters_.control_lost;
    spdlog::warn("virtio-console {}: control message (port {}, event {}) lost: {} wait already",
                 name_, port, event, control_out_.size());
    return;
  }
  const VirtioConsoleControl header{.id = port, .event = event, .value = value};
  std::vector<uint8_t> message(sizeof(header) + payload.size());
  std::memcpy(message.data(), &header, sizeof(header));
  std::copy(payload.begin(), payload.end(), message.begin() + sizeof(header));
  control_out_.push_back(std::move(message));
}

void VirtioConsole::process_control_rx() {
  SplitQueue* queue = queues_[kControlRxQueue];
  for (uint32_t budget = kChainBudget; budget > 0; --budget) {
    if (control_out_.empty()) return;
    auto chain = queue->pop();
    if (!chain) {
      check_broken(queue);
      return;
    }
    if (chain->writable_bytes() < sizeof(VirtioConsoleControl)) {
      // Returned empty; the message waits for a buffer that holds it.
      ++counters_.control_lost;
      spdlog::debug("virtio-console {}: control receive chain {} of {} bytes returned empty", name_,
                    chain->head(), chain->writable_bytes());
      queue->add_used(std::move(*chain), 0);
      continue;
    }
    // A name longer than the buffer is cut short.
    const size_t written = chain->write(0, control_out_.front());
    queue->add_used(std::move(*chain), static_cast<uint32_t>(written));
    control_out_.pop_front();
  }
  resume_.signal();
}

// ---- Guest -> host ----

void VirtioConsole::process_port_tx(uint32_t index) {
  Port& port = ports_[index];
  Budget budget{.chains = kChainBudget, .bytes = kBytesBudget};
  while (!port.output_blocked) {
    const Fill fill = fill_output(port, tx_queue(index), budget);
    drain_output(index);
    if (port.output_blocked || fill == Fill::kQueueEmpty) return;
    if (fill == Fill::kBudgetSpent) {
      resume_.signal();
      return;
    }
  }
}

VirtioConsole::Fill VirtioConsole::fill_output(Port& port, SplitQueue* queue, Budget& budget) {
  while (port.output.size() < kOutputBufferBytes) {
    if (!port.tx_chain) {
      if (queue == nullptr) return Fill::kQueueEmpty;
      if (budget.chains == 0 || budget.bytes == 0) return Fill::kBudgetSpent;
      port.tx_chain = queue->pop();
      if (!port.tx_chain) {
        check_broken(queue);
        return Fill::kQueueEmpty;
      }
      --budget.chains;
      port.tx_offset = 0;
    }
    DescriptorChain& chain = *port.tx_chain;
    // A chain larger than the room left is taken in parts: the buffer never grows past its cap.
    const size_t bytes = std::min<size_t>(kOutputBufferBytes - port.output.size(),
                                          chain.readable_bytes() - port.tx_offset);
    const size_t old_size = port.output.size();
    port.output.resize(old_size + bytes);
    const size_t copied = chain.read(port.tx_offset, std::span(port.output).subspan(old_size));
    port.output.resize(old_size + copied);
    port.tx_offset += static_cast<uint32_t>(bytes);
    budget.bytes -= std::min(budget.bytes, bytes);
    if (port.tx_offset == chain.readable_bytes()) {
      metrics_.count_request(chain.readable_bytes());
      queue->add_used(std::move(chain), 0);
      port.tx_chain.reset();
    }
  }
  return Fill::kBufferFull;
}

void VirtioConsole::drain_output(uint32_t index) {
  Port& port = ports_[index];
  port.output_blocked = false;
  while (!port.output.empty()) {
    if (port.output_kind == OutputKind::kCallback) {
      port.config.output_callback(port.output);
      port.output.clear();
      return;
    }
    if (port.output_kind == OutputKind::kNone || port.output_failed) {
      counters_.output_discarded += port.output.size();
      port.output.clear();
      return;
    }
    const int fd = port.config.output_fd;
    const ssize_t n =
        port.output_kind == OutputKind::kSend
            ? ::send(fd, port.output.data(), port.output.size(), MSG_DONTWAIT | MSG_NOSIGNAL)
            : ::write(fd, port.output.data(), port.output.size());
    if (n > 0) {
      port.output.erase(port.output.begin(), port.output.begin() + n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      port.output_blocked = true;
      return;
    }
    const std::string why = n < 0 ? std::strerror(errno) : "wrote nothing";
    port.output_failed = true;
    if (port.config.input_fd < 0) {
      // Like a write into a pipe without a reader, the guest's next write should fail: an
      // output-only port goes away (DEVICE_REMOVE; Linux then fails writes with ENODEV) rather
      // than take the guest's output into nothing for ever (`vmm run -- yes | head -1`).
      spdlog::debug("virtio-console {}: port {}: output fd {}: {}; the port is removed", name_,
                    index, fd, why);
      remove_port(index);
    } else {
      spdlog::warn(
          "virtio-console {}: port {}: output fd {}: {}; its output is discarded from now on",
          name_, index, fd, why);
    }
  }
}

void VirtioConsole::flush_output(std::chrono::milliseconds stall) {
  using Clock = std::chrono::steady_clock;
  for (uint32_t index = 0; index < ports_.size(); ++index) {
    Port& port = ports_[index];
    // At most the chains the queue holds now: a guest still writing can't keep us here.
    Budget budget{.chains = kQueueSize, .bytes = std::numeric_limits<size_t>::max()};
    SplitQueue* queue = active() ? tx_queue(index) : nullptr;
    auto progress = Clock::now();
    while (true) {
      const Fill fill = fill_output(port, queue, budget);
      const size_t filled = port.output.size();
      drain_output(index);
      if (port.output.size() < filled) progress = Clock::now();
      if (port.output_blocked) {
        if (Clock::now() - progress >= stall) {
          // A reader that stopped reading can't keep the machine from stopping.
          spdlog::warn(
              "virtio-console {}: port {}: {} bytes of output not written: its reader "
              "stopped reading",
              name_, index, port.output.size());
          counters_.output_discarded += port.output.size();
          port.output.clear();
          break;
        }
        const timespec nap{0, 1000 * 1000};  // 1 ms; poll() is not among the loop's syscalls
        ::nanosleep(&nap, nullptr);
        continue;
      }
      if (fill != Fill::kBufferFull) break;
    }
    update_interest(index);
  }
  if (active()) notify_driver();
}

// ---- Host -> guest ----

bool VirtioConsole::send(uint32_t index, std::span<const uint8_t> bytes) {
  if (index >= ports_.size()) return false;
  Port& port = ports_[index];
  if (bytes.size() > kInputBufferBytes - port.input.size()) return false;
  port.input.insert(port.input.end(), bytes.begin(), bytes.end());
  if (active() && !failed_) {
    process_port_rx(index);
    update_interest(index);
    notify_driver();
  }
  return true;
}

void VirtioConsole::process_port_rx(uint32_t index) {
  Port& port = ports_[index];
  if (!port.guest_open) return;  // Linux discards what reaches a closed port
  SplitQueue* queue = rx_queue(index);
  for (uint32_t budget = kChainBudget; budget > 0; --budget) {
    if (!port.rx_chain) {
      port.rx_chain = queue->pop();
      if (!port.rx_chain) {
        check_broken(queue);
        return;
      }
      if (port.rx_chain->writable_bytes() == 0) {
        queue->add_used(std::move(*port.rx_chain), 0);
        port.rx_chain.reset();
        continue;
      }
    }
    // Without send()'s bytes the chain waits for input_fd (update_interest watches it).
    if (port.input.empty()) return;
    const size_t written = port.rx_chain->write(0, port.input);
    metrics_.count_request(written);
    queue->add_used(std::move(*port.rx_chain), static_cast<uint32_t>(written));
    port.rx_chain.reset();
    port.input.erase(port.input.begin(), port.input.begin() + static_cast<ptrdiff_t>(written));
  }
  resume_.signal();
}

void VirtioConsole::read_input(uint32_t index) {
  Port& port = ports_[index];
  const int fd = port.config.input_fd;
  const size_t want = std::min<size_t>(port.rx_chain->writable_bytes(), staging_.size());
  // One read per readiness: input_fd may be blocking.
  const ssize_t n = port.input_is_socket ? ::recv(fd, staging_.data(), want, MSG_DONTWAIT)
                                         : ::read(fd, staging_.data(), want);
  if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    if (n < 0) {
      spdlog::warn("virtio-console {}: port {}: input fd {}: {}; the port is closed for the guest",
                   name_, index, fd, std::strerror(errno));
    } else {
      spdlog::debug("virtio-console {}: port {}: input fd {} ended", name_, index, fd);
    }
    port.input_ended = true;
    // Closing a port that carries output too would block the guest's writes (Linux waits for the
    // host to connect again): hvc0 just gets no more input.
    if (port.output_kind == OutputKind::kNone) close_for_guest(index);
    return;
  }
  const auto bytes = static_cast<size_t>(n);
  port.rx_chain->write(0, std::span(staging_).first(bytes));
  metrics_.count_request(bytes);
  rx_queue(index)->add_used(std::move(*port.rx_chain), static_cast<uint32_t>(bytes));
  port.rx_chain.reset();
  process_port_rx(index);  // holds the next chain, if the driver has one
}

void VirtioConsole::remove_port(uint32_t index) {
  Port& port = ports_[index];
  if (std::exchange(port.removed, true) || !port.added) return;
  port.added = false;
  port.ready = false;
  queue_control(index, kConsoleDeviceRemove, 1);
  process_control_rx();
}

void VirtioConsole::close_for_guest(uint32_t index) {
  Port& port = ports_[index];
  if (std::exchange(port.closed_for_guest, true)) return;
  queue_control(index, kConsolePortOpen, 0);
  process_control_rx();
}

void VirtioConsole::on_port_events(uint32_t index, uint32_t events) {
  Port& port = ports_[index];
  const bool usable = active() && !failed_;
  if (port.output_blocked && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0) {
    // A failed write tells an error or hang-up apart from room.
    if (usable) {
      port.output_blocked = false;
      process_port_tx(index);
    } else {
      drain_output(index);
    }
  }
  if (wants_input(port) && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0) read_input(index);
  update_interest(index);
  if (active()) notify_driver();
}

bool VirtioConsole::wants_input(const Port& port) const {
  return port.config.input_fd >= 0 && active() && !failed_ && port.guest_open &&
         !port.input_ended && port.input.empty() && port.rx_chain;
}

void VirtioConsole::update_interest(uint32_t index) {
  const Port& port = ports_[index];
  const int input_fd = port.config.input_fd;
  const int output_fd = port.config.output_fd;
  const uint32_t input_events = wants_input(port) ? uint32_t{EPOLLIN} : 0;
  const uint32_t output_events = port.output_blocked ? uint32_t{EPOLLOUT} : 0;
  if (input_fd >= 0 && input_fd == output_fd) {
    set_interest(index, input_fd, input_events | output_events);
    return;
  }
  if (input_fd >= 0) set_interest(index, input_fd, input_events);
  if (output_fd >= 0) set_interest(index, output_fd, output_events);
}

void VirtioConsole::set_interest(uint32_t index, int fd, uint32_t events) {
  const auto it = interest_.find(fd);
  const uint32_t current = it == interest_.end() ? 0 : it->second;
  if (events == current) return;
  // Not registered at all when nothing is wanted: epoll reports a hang-up even then, and a handler
  // that can't act on it would be called every round.
  if (events == 0) {
    loop_.remove(fd);
    interest_.erase(it);
    return;
  }
  if (current == 0) {
    loop_.add(fd, events, [this, index](uint32_t ready) { on_port_events(index, ready); });
  } else {
    loop_.modify(fd, events);
  }
  interest_[fd] = events;
}

}  // namespace vmm::devices::virtio
