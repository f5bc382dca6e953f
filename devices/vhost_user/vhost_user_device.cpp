#include "devices/vhost_user/vhost_user_device.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::vhost_user {

using virtio::DescriptorChain;
using virtio::SplitQueue;
using virtio::VirtqUsedElem;

namespace {

constexpr uint64_t kPage = 4096;
// The shadow rings' region starts at the first GiB boundary past guest RAM.
constexpr uint64_t kShadowAlignment = uint64_t{1} << 30;

constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

// The shadow rings' offsets in their memfd: each queue's avail ring, then its used ring, each on
// a page of its own, sized for the largest queue.
uint64_t avail_bytes(uint16_t max_size) {
  return align_up(virtio::avail_ring_bytes(max_size), kPage);
}
uint64_t shadow_stride(uint16_t max_size) {
  return avail_bytes(max_size) + align_up(virtio::used_ring_bytes(max_size), kPage);
}

// The ring indices the backend reads and writes concurrently (split ring: flags, idx, ring[]).
std::atomic_ref<uint16_t> ring_idx(uint8_t* ring) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ring + 2));
}

}  // namespace

struct VhostUserDevice::Queue {
  SplitQueue* guest = nullptr;  // while active
  bool started = false;         // the backend serves it
  bool broken_reported = false;
  uint16_t size = 0;
  uint8_t* shadow_avail = nullptr;
  uint8_t* shadow_used = nullptr;
  uint16_t next_avail = 0;  // the shadow avail idx published next
  uint16_t next_used = 0;   // the shadow used idx up to which entries were taken
  // The chains the backend holds, by head (a head is in flight at most once).
  std::vector<std::optional<DescriptorChain>> in_flight;
  size_t in_flight_count = 0;
  bool warned_duplicate_head = false;
  EventFd kick;  // ours → the backend's
  EventFd call;  // the backend's → ours
};

VhostUserDevice::VhostUserDevice(const GuestMemory& memory, EventLoop& loop,
                                 std::unique_ptr<BackendChannel> channel, DeviceSpec spec)
    : memory_(memory),
      loop_(loop),
      channel_(std::move(channel)),
      name_(channel_->name()),
      spec_(std::move(spec)) {
  if (memory_.fd() == -1) {
    fail("{}: guest RAM must be a memfd to be shared with the backend", name_);
  }
  if (!std::has_single_bit(spec_.queue_size) || spec_.queue_size > virtio::kMaxQueueSize) {
    fail("{}: queue size {} is not a power of two up to {}", name_, spec_.queue_size,
         virtio::kMaxQueueSize);
  }
  channel_->set_owner();
  backend_features_ = channel_->get_features();
  if ((backend_features_ & virtio::kFeatureVersion1) == 0) {
    fail("{}: the backend does not offer VIRTIO_F_VERSION_1", name_);
  }
  if ((backend_features_ & kFeatureProtocolFeatures) != 0) {
    protocol_features_ = channel_->get_protocol_features() &
                         (kProtocolFeatureMq | kProtocolFeatureReplyAck | kProtocolFeatureConfig);
    channel_->set_protocol_features(protocol_features_);
  }
  queues_ = std::vector<Queue>(negotiate_queue_count());
  config_ = spec_.config.empty() ? backend_config() : spec_.config;
  map_shadow_rings();
  send_mem_table();
  channel_watched_.add(channel_->fd(), EPOLLIN | EPOLLRDHUP, [this](uint32_t events) {
    const bool hung_up = (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)) != 0;
    backend_failed(fmt::format("{}: the backend {}", name_,
                               hung_up ? "closed its socket" : "sent a message nobody asked for"));
  });
}

VhostUserDevice::~VhostUserDevice() {
  // The guest is going away with the machine: nobody waits for these any more.
  for (Queue& queue : queues_) {
    for (auto& chain : queue.in_flight) {
      if (chain) std::move(*chain).discard();
    }
  }
}

uint16_t VhostUserDevice::queue_count() const {
  return static_cast<uint16_t>(queues_.size());  // at most kMaxQueues
}

uint16_t VhostUserDevice::negotiate_queue_count() {
  uint16_t count = spec_.queue_count;
  if ((protocol_features_ & kProtocolFeatureMq) != 0) {
    const uint16_t served = channel_->get_queue_num();
    if (spec_.config.empty()) {
      count = served;  // the backend's config space describes its own queues
    } else if (served < count) {
      fail("{}: the backend serves {} queues, the device needs {}", name_, served, count);
    }
  }
  if (count == 0 || count > kMaxQueues) {
    fail("{}: {} queues, must be 1 to {}", name_, count, kMaxQueues);
  }
  return count;
}

std::vector<uint8_t> VhostUserDevice::backend_config() {
  if ((protocol_features_ & kProtocolFeatureConfig) == 0) {
    fail("{}: the backend does not offer its config space (VHOST_USER_PROTOCOL_F_CONFIG)", name_);
  }
  return channel_->get_config(0, spec_.config_size);
}

void VhostUserDevice::map_shadow_rings() {
  const uint64_t stride = shadow_stride(spec_.queue_size);
  const uint64_t size = stride * queues_.size();
  shadow_fd_ = UniqueFd(::memfd_create("vmm-vhost-user-shadow-rings", MFD_CLOEXEC));
  if (!shadow_fd_) throw_errno(fmt::format("{}: cannot create the shadow rings' memfd", name_));
  if (::ftruncate(shadow_fd_.get(), static_cast<off_t>(size)) != 0) {
    throw_errno(fmt::format("{}: cannot size the shadow rings' memfd", name_));
  }
  shadow_ = MemoryMapping::of_file(shadow_fd_.get(), 0, size, MemoryMapping::Sharing::kShared);
  for (size_t index = 0; index < queue_count(); ++index) {
    Queue& queue = queues_[index];
    queue.shadow_avail = shadow_->data() + stride * index;
    queue.shadow_used = queue.shadow_avail + avail_bytes(spec_.queue_size);
  }
  const GuestMemory::Region& last = memory_.regions().back();
  shadow_guest_address_ = align_up(last.guest_base + last.size, kShadowAlignment);
}

void VhostUserDevice::send_mem_table() {
  const auto& ram = memory_.regions();
  if (ram.size() + 1 > kMaxMemoryRegions) {
    fail("{}: guest RAM has {} regions, the backend takes {} with the shadow rings", name_,
         ram.size(), kMaxMemoryRegions - 1);
  }
  std::vector<MemoryRegion> regions;
  std::vector<int> fds;
  for (const GuestMemory::Region& region : ram) {
    regions.push_back({.guest_address = region.guest_base,
                       .size = region.size,
                       .user_address = reinterpret_cast<uint64_t>(region.host),
                       .mmap_offset = region.file_offset});
    fds.push_back(memory_.fd());
  }
  regions.push_back({.guest_address = shadow_guest_address_,
                     .size = shadow_->size(),
                     .user_address = reinterpret_cast<uint64_t>(shadow_->data()),
                     .mmap_offset = 0});
  fds.push_back(shadow_fd_.get());
  channel_->set_mem_table(regions, fds);
}

uint64_t VhostUserDevice::features() const {
  // The backend follows indirect tables only if it says so.
  return virtio::kFeatureVersion1 | virtio::kFeatureRingEventIdx |
         (backend_features_ & (virtio::kFeatureRingIndirectDesc | spec_.device_features));
}

std::vector<uint16_t> VhostUserDevice::queue_max_sizes() const {
  return std::vector<uint16_t>(queues_.size(), spec_.queue_size);
}

void VhostUserDevice::read_config(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= config_.size()) return;
  const size_t bytes = std::min<uint64_t>(data.size(), config_.size() - offset);
  std::copy_n(config_.begin() + static_cast<ptrdiff_t>(offset), bytes, data.begin());
}

void VhostUserDevice::activate(const virtio::Activation& activation) {
  interrupt_ = activation.interrupt;
  for (size_t index = 0; index < queue_count(); ++index) {
    queues_[index].guest = activation.queues.at(index);
  }
  if (!backend_dead()) {
    try {
      // Without EVENT_IDX: the shadow rings have none (see the class comment).
      channel_->set_features((activation.driver_features & ~virtio::kFeatureRingEventIdx) |
                             (backend_features_ & kFeatureProtocolFeatures));
      for (uint16_t index = 0; index < queue_count(); ++index) {
        if (queues_[index].guest->ready()) start_queue(index);
      }
    } catch (const BackendError& error) {
      backend_failed(error.what());
    }
  }
  watch_active(activation.notify_fds);
}

void VhostUserDevice::start_queue(uint16_t index) {
  Queue& queue = queues_[index];
  queue.size = queue.guest->config().size;
  queue.next_avail = 0;
  queue.next_used = 0;
  queue.in_flight.clear();
  queue.in_flight.resize(queue.size);
  queue.in_flight_count = 0;
  std::memset(queue.shadow_avail, 0, virtio::avail_ring_bytes(queue.size));
  std::memset(queue.shadow_used, 0, virtio::used_ring_bytes(queue.size));
  queue.kick.consume();
  queue.call.consume();
  // SplitQueue::activate() checked that the table lies in guest RAM.
  const auto desc_table =
      memory_.slice(queue.guest->config().desc_table, virtio::desc_table_bytes(queue.size));
  channel_->set_vring_num(index, queue.size);
  channel_->set_vring_base(index, 0);
  channel_->set_vring_addr({.index = index,
                            .desc_user_address = reinterpret_cast<uint64_t>(desc_table->data()),
                            .used_user_address = reinterpret_cast<uint64_t>(queue.shadow_used),
                            .avail_user_address = reinterpret_cast<uint64_t>(queue.shadow_avail)});
  channel_->set_vring_call(index, queue.call.fd());
  channel_->set_vring_kick(index, queue.kick.fd());
  // With protocol features a ring starts disabled.
  if ((backend_features_ & kFeatureProtocolFeatures) != 0) channel_->set_vring_enable(index, true);
  queue.started = true;
}

void VhostUserDevice::watch_active(const std::vector<int>& notify_fds) {
  watched_.clear();
  watched_.add_notify_fds(notify_fds, [this](uint16_t index) { notify(index); });
  for (uint16_t index = 0; index < queue_count(); ++index) {
    watched_.add(queues_[index].call.fd(), EPOLLIN, [this, index](uint32_t) {
      queues_[index].call.consume();
      collect_used(index);
    });
  }
  watched_.add(resume_.fd(), EPOLLIN, [this](uint32_t) { on_resume(); });
}

void VhostUserDevice::notify(uint16_t index) {
  if (interrupt_ == nullptr) return;
  forward_available(index);
}

void VhostUserDevice::on_resume() {
  resume_.consume();
  if (interrupt_ == nullptr) return;
  for (uint16_t index = 0; index < queue_count(); ++index) {
    collect_used(index);
    forward_available(index);
  }
}

void VhostUserDevice::forward_available(uint16_t index) {
  Queue& queue = queues_[index];
  if (queue.guest == nullptr || !queue.guest->ready()) return;
  if (!backend_dead() && !queue.started) return;
  uint32_t forwarded = 0;
  for (uint32_t budget = kBudget;; --budget) {
    // A full shadow ring waits for the backend's completions, which come back here.
    if (!backend_dead() && queue.in_flight_count == queue.size) break;
    if (budget == 0) {
      resume_.signal();
      break;
    }
    auto chain = queue.guest->pop();
    if (!chain) {
      check_broken(index);
      break;
    }
    if (backend_dead()) {
      const uint32_t written = spec_.fail_request(*chain);
      queue.guest->add_used(std::move(*chain), written);
      metrics_.count_error();
      continue;
    }
    const uint16_t head = chain->head();
    if (queue.in_flight[head]) {
      // The driver offered a descriptor the backend still holds: give the copy back unread.
      if (!std::exchange(queue.warned_duplicate_head, true)) {
        spdlog::warn(
            "{}: queue {}: the driver offered head {} while it is in flight; returned "
            "empty (further ones are not logged)",
            name_, index, head);
      }
      queue.guest->add_used(std::move(*chain), 0);
      metrics_.count_error();
      continue;
    }
    const uint64_t slot = queue.next_avail & (queue.size - 1);
    std::memcpy(queue.shadow_avail + 4 + 2 * slot, &head, sizeof(head));
    ++queue.next_avail;
    queue.in_flight[head] = std::move(chain);
    ++queue.in_flight_count;
    ++forwarded;
  }
  if (forwarded > 0) {
    // The ring entries before the index that publishes them.
    ring_idx(queue.shadow_avail).store(queue.next_avail, std::memory_order_release);
    queue.kick.signal();
  }
  notify_driver(queue);
}

void VhostUserDevice::collect_used(uint16_t index) {
  Queue& queue = queues_[index];
  if (backend_dead() || !queue.started) return;
  const uint16_t used_idx = ring_idx(queue.shadow_used).load(std::memory_order_acquire);
  const uint16_t pending = used_idx - queue.next_used;
  if (pending > queue.in_flight_count) {
    backend_failed(
        fmt::format("{}: queue {}: the backend's used index moved by {} with {} "
                    "requests in flight",
                    name_, index, pending, queue.in_flight_count));
    return;
  }
  const uint16_t batch = std::min<uint16_t>(pending, kBudget);
  for (uint16_t taken = 0; taken < batch; ++taken) {
    VirtqUsedElem used;
    const uint64_t slot = queue.next_used & (queue.size - 1);
    std::memcpy(&used, queue.shadow_used + 4 + sizeof(used) * slot, sizeof(used));
    if (used.id >= queue.size || !queue.in_flight[used.id]) {
      queue.guest->publish_used();
      backend_failed(
          fmt::format("{}: queue {}: the backend returned used id {}, not a request in "
                      "flight",
                      name_, index, used.id));
      return;
    }
    // SplitQueue clamps the length to the chain's writable part.
    DescriptorChain& chain = *queue.in_flight[used.id];
    metrics_.count_request(std::min<uint64_t>(used.len, chain.writable_bytes()));
    queue.guest->fill_used(std::move(chain), used.len);
    queue.in_flight[used.id].reset();
    --queue.in_flight_count;
    ++queue.next_used;
  }
  queue.guest->publish_used();
  if (pending > batch) resume_.signal();
  notify_driver(queue);
  // Chains the full shadow ring held back.
  forward_available(index);
}

void VhostUserDevice::backend_failed(const std::string& reason) {
  if (backend_dead()) return;
  spdlog::error("{}: requests fail with I/O errors from now on", reason);
  channel_watched_.clear();
  channel_.reset();
  if (interrupt_ == nullptr) return;
  for (uint16_t index = 0; index < queue_count(); ++index) {
    fail_in_flight(queues_[index]);
    forward_available(index);
  }
  interrupt_->signal_needs_reset();
}

void VhostUserDevice::fail_in_flight(Queue& queue) {
  if (queue.in_flight_count == 0) return;
  for (auto& chain : queue.in_flight) {
    if (!chain) continue;
    const uint32_t written = spec_.fail_request(*chain);
    queue.guest->fill_used(std::move(*chain), written);
    chain.reset();
    metrics_.count_error();
  }
  queue.in_flight_count = 0;
  queue.guest->publish_used();
  notify_driver(queue);
}

void VhostUserDevice::check_broken(uint16_t index) {
  Queue& queue = queues_[index];
  if (queue.broken_reported || !queue.guest->broken()) return;
  queue.broken_reported = true;
  metrics_.count_error();
  spdlog::error("{}: queue {}: {}; the device needs a reset", name_, index,
                queue.guest->broken_reason());
  interrupt_->signal_needs_reset();
}

void VhostUserDevice::notify_driver(Queue& queue) {
  if (queue.guest->needs_notification()) interrupt_->signal_used();
}

void VhostUserDevice::reset(ResetDone done) {
  watched_.clear();
  resume_.consume();
  try {
    // The backend stops using the rings (and the guest's buffers) before it replies.
    for (uint16_t index = 0; index < queue_count(); ++index) {
      if (!backend_dead() && queues_[index].started) channel_->get_vring_base(index);
    }
  } catch (const BackendError& error) {
    interrupt_ = nullptr;  // the driver no longer expects its requests back
    backend_failed(error.what());
  }
  for (Queue& queue : queues_) {
    for (auto& chain : queue.in_flight) {
      if (chain) std::move(*chain).discard();
    }
    queue.in_flight.clear();
    queue.in_flight_count = 0;
    queue.guest = nullptr;
    queue.started = false;
    queue.broken_reported = false;
  }
  interrupt_ = nullptr;
  done();
}

size_t VhostUserDevice::requests_in_flight() const {
  size_t total = 0;
  for (const Queue& queue : queues_) total += queue.in_flight_count;
  return total;
}

std::string VhostUserDevice::debug_state() const {
  std::string in_flight;
  for (size_t index = 0; index < queue_count(); ++index) {
    if (queues_[index].in_flight_count == 0) continue;
    in_flight += fmt::format("{}queue {}: {}", in_flight.empty() ? "" : ", ", index,
                             queues_[index].in_flight_count);
  }
  return fmt::format("backend {}; requests in flight: {}", backend_dead() ? "gone" : "connected",
                     in_flight.empty() ? "none" : in_flight);
}

void VhostUserDevice::quiesce(std::chrono::steady_clock::time_point /*deadline*/) {
  fail(
      "{}: a machine with vhost-user devices can't be snapshotted (their state lives in the "
      "backend process)",
      name_);
}

}  // namespace vmm::devices::vhost_user
