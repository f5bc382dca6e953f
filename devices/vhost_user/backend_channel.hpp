#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/util/unique_fd.hpp"
#include "devices/vhost_user/message.hpp"

namespace vmm::devices::vhost_user {

// The frontend's end of one backend's socket. Synchronous request/reply with a bounded wait: a
// backend that dies, hangs (no reply within reply_timeout) or answers wrongly makes the call throw
// BackendError, and the channel is dead from then on (every later call throws at once). Not
// thread-safe: one thread owns it (the device's event loop, or the thread that builds the machine
// before the loop runs).
class BackendChannel {
 public:
  // `socket`: connected (SOCK_STREAM unix). `name` starts every message: "vhost-user fs
  // (/srv:docs): ...".
  BackendChannel(UniqueFd socket, std::string name,
                 std::chrono::milliseconds reply_timeout = std::chrono::seconds(5));

  // Connects to the unix socket at `path` (error names it: "socket=/x.sock: No such file or
  // directory").
  static UniqueFd connect(const std::string& path);

  // To watch on the loop: readable or hung up outside a request = the backend is gone.
  int fd() const { return socket_.get(); }
  bool dead() const { return failure_.has_value(); }
  const std::string& name() const { return name_; }

  void set_owner();
  uint64_t get_features();
  void set_features(uint64_t features);
  uint64_t get_protocol_features();
  // REPLY_ACK in `features`: later SET_* ask for and check an ack.
  void set_protocol_features(uint64_t features);
  uint16_t get_queue_num();
  std::vector<uint8_t> get_config(uint32_t offset, uint32_t size);
  // One fd per region (the memfd each region maps).
  void set_mem_table(std::span<const MemoryRegion> regions, std::span<const int> fds);
  void set_vring_num(uint32_t index, uint32_t size);
  void set_vring_addr(const VringAddress& address);
  void set_vring_base(uint32_t index, uint32_t base);
  // Stops the ring in the backend.
  uint32_t get_vring_base(uint32_t index);
  // eventfd < 0: no fd (the backend polls, or the ring goes without interrupts).
  void set_vring_kick(uint32_t index, int eventfd);
  void set_vring_call(uint32_t index, int eventfd);
  void set_vring_enable(uint32_t index, bool enable);

 private:
  // Runs one exchange; any failure in it kills the channel and names it.
  template <typename Exchange>
  auto guarded(Exchange exchange);
  // A request whose reply payload `decode` checks and turns into the result.
  template <typename Decode>
  auto query(Request request, std::span<const uint8_t> payload, Decode decode);
  // A SET_* without a reply of its own: waits for and checks the ack once REPLY_ACK is on.
  void command(Request request, std::span<const uint8_t> payload, std::span<const int> fds = {});
  void send_message(Request request, std::span<const uint8_t> message, std::span<const int> fds,
                    std::chrono::steady_clock::time_point deadline);
  std::vector<uint8_t> receive_reply(Request request,
                                     std::chrono::steady_clock::time_point deadline);
  // Reads exactly out.size() bytes; any fd the backend attaches fails it.
  void receive_exact(Request request, std::span<uint8_t> out,
                     std::chrono::steady_clock::time_point deadline);
  // Waits until the socket is ready for `events`; throws when the deadline passes first.
  void wait_ready(short events, std::chrono::steady_clock::time_point deadline,
                  const std::string& what) const;

  UniqueFd socket_;
  std::string name_;
  std::chrono::milliseconds reply_timeout_;
  bool reply_ack_ = false;
  std::optional<std::string> failure_;  // why the channel died
};

}  // namespace vmm::devices::vhost_user
