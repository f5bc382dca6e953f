#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/event/event_loop.hpp"
#include "base/memory/guest_memory.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/vhost_user/backend_channel.hpp"
#include "devices/vhost_user/device_spec.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "devices/virtio/watched_fds.hpp"

namespace vmm::devices::vhost_user {

// A virtio device whose requests a vhost-user backend process serves (virtio-fs by virtiofsd,
// virtio-blk by a storage daemon): vmm owns the guest's queues, the backend does the work.
//
// Shadow rings. The backend never sees the guest's avail and used rings. Per queue the device
// keeps a shadow avail ring and a shadow used ring in a memfd of its own, which the backend maps
// as one more memory region (at a guest-physical address past guest RAM); the backend reads the
// guest's descriptor table (and indirect tables) directly from guest RAM, whose memfd it maps
// too. A guest notification moves the chains SplitQueue pops (and checks) into the shadow avail
// ring and kicks the backend; the backend's call moves each shadow used entry back to the guest's
// used ring, after checking that its id is a request in flight. So the device knows every request
// the backend holds, and when the backend dies each one completes with the device type's I/O error
// (DeviceSpec::fail_request) instead of leaving the guest waiting for ever; later requests fail at
// once. The backend is told the guest's features without EVENT_IDX (the shadow rings have no event
// indices: the backend calls after every batch and vmm always kicks); the guest-side queues are
// vmm's, so the guest gets EVENT_IDX anyway.
//
// A guest that rewrites a descriptor after the device popped it can point the backend at the
// shadow rings (the backend checks addresses only against its memory table); at worst it forges
// completions of its own requests or makes the device take the backend for broken.
//
// The backend is gone when its socket hangs up (or says anything outside a request), when a
// request to it fails (BackendChannel's BackendError: no reply in time, a wrong one) or when it
// returns a used entry that is no request in flight. The device then logs one error line, fails
// every request as above, drops the socket (a live but broken backend exits on that), sets
// DEVICE_NEEDS_RESET, and never talks to the backend again.
//
// Threading: owned by the event loop thread (VirtioDevice); the constructor runs on the thread
// that builds the machine. From activation to reset it watches the queues' notify fds, the
// backend's call eventfds and a resume eventfd; from construction to the backend's death, its
// socket. Each wake-up moves at most kBudget chains per queue each way and signals the resume
// eventfd when it stopped early. A reset asks the backend to stop each ring (GET_VRING_BASE), a
// bounded wait (BackendChannel's reply timeout) on the loop.
//
// A machine with a vhost-user device can't be snapshotted: its state lives in the backend.
class VhostUserDevice final : public virtio::VirtioDevice {
 public:
  // Chains moved per queue and wake-up, each way.
  static constexpr uint32_t kBudget = 64;
  static constexpr uint16_t kMaxQueues = 64;

  // The handshake: SET_OWNER, features, protocol features, the queue count, the config space and
  // SET_MEM_TABLE (guest RAM and the shadow rings). Throws vmm::Error naming the channel.
  // `memory` must be fd-backed (GuestMemory::fd() != -1) and outlive the device.
  VhostUserDevice(const GuestMemory& memory, EventLoop& loop,
                  std::unique_ptr<BackendChannel> channel, DeviceSpec spec);
  VhostUserDevice(const VhostUserDevice&) = delete;
  VhostUserDevice& operator=(const VhostUserDevice&) = delete;
  ~VhostUserDevice() override;

  uint32_t device_id() const override { return spec_.device_id; }
  uint64_t features() const override;
  std::vector<uint16_t> queue_max_sizes() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void activate(const virtio::Activation& activation) override;
  void notify(uint16_t index) override;
  void reset(ResetDone done) override;
  std::string debug_state() const override;
  // Throws vmm::Error: the device's state lives in the backend process.
  void quiesce(std::chrono::steady_clock::time_point deadline) override;

  // On the owner thread.
  bool backend_dead() const { return channel_ == nullptr; }
  size_t requests_in_flight() const;

 private:
  struct Queue;

  uint16_t queue_count() const;
  // The handshake's steps (constructor).
  uint16_t negotiate_queue_count();
  std::vector<uint8_t> backend_config();
  void map_shadow_rings();
  void send_mem_table();

  void start_queue(uint16_t index);
  void watch_active(const std::vector<int>& notify_fds);
  void on_resume();
  // Guest → backend: pops chains into the shadow avail ring (or fails them once the backend is
  // gone).
  void forward_available(uint16_t index);
  // Backend → guest: returns the shadow used ring's new entries to the guest.
  void collect_used(uint16_t index);
  // The backend is gone (`reason` names the channel): logs it, drops the socket, fails every
  // request in flight and tells the driver.
  void backend_failed(const std::string& reason);
  void fail_in_flight(Queue& queue);
  void check_broken(uint16_t index);
  void notify_driver(Queue& queue);

  const GuestMemory& memory_;
  EventLoop& loop_;
  std::unique_ptr<BackendChannel> channel_;  // null once the backend is gone
  const std::string name_;                   // the channel's
  const DeviceSpec spec_;
  uint64_t backend_features_ = 0;
  uint64_t protocol_features_ = 0;  // as set on the backend
  std::vector<uint8_t> config_;
  UniqueFd shadow_fd_;
  std::optional<MemoryMapping> shadow_;
  uint64_t shadow_guest_address_ = 0;
  std::vector<Queue> queues_;
  virtio::DeviceInterrupt* interrupt_ = nullptr;  // while active
  EventFd resume_;
  // After what their handlers reach (the queues' eventfds): destroyed first.
  virtio::WatchedFds watched_{loop_};          // notify, call and resume fds, while active
  virtio::WatchedFds channel_watched_{loop_};  // the backend's socket, until it is gone
};

}  // namespace vmm::devices::vhost_user
