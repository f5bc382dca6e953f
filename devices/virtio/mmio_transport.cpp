#include "devices/virtio/mmio_transport.hpp"

#include <fmt/format.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <exception>
#include <limits>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

namespace {

// Register offsets (virtio 1.2, 4.2.2, Table 4.1).
constexpr uint64_t kMagicValueReg = 0x000;
constexpr uint64_t kVersionReg = 0x004;
constexpr uint64_t kDeviceIdReg = 0x008;
constexpr uint64_t kVendorIdReg = 0x00c;
constexpr uint64_t kDeviceFeatures = 0x010;
constexpr uint64_t kDeviceFeaturesSel = 0x014;
constexpr uint64_t kDriverFeatures = 0x020;
constexpr uint64_t kDriverFeaturesSel = 0x024;
constexpr uint64_t kQueueSel = 0x030;
constexpr uint64_t kQueueNumMax = 0x034;
constexpr uint64_t kQueueNum = 0x038;
constexpr uint64_t kQueueReady = 0x044;
constexpr uint64_t kQueueNotify = MmioTransport::kQueueNotifyOffset;
constexpr uint64_t kInterruptStatus = 0x060;
constexpr uint64_t kInterruptAck = 0x064;
constexpr uint64_t kStatus = 0x070;
constexpr uint64_t kQueueDescLow = 0x080;
constexpr uint64_t kQueueDescHigh = 0x084;
constexpr uint64_t kQueueDriverLow = 0x090;
constexpr uint64_t kQueueDriverHigh = 0x094;
constexpr uint64_t kQueueDeviceLow = 0x0a0;
constexpr uint64_t kQueueDeviceHigh = 0x0a4;
constexpr uint64_t kShmSel = 0x0ac;
constexpr uint64_t kShmLenLow = 0x0b0;
constexpr uint64_t kShmBaseHigh = 0x0bc;
constexpr uint64_t kConfigGeneration = 0x0fc;

// InterruptStatus bits (4.2.2).
constexpr uint32_t kInterruptUsedBuffer = 1;
constexpr uint32_t kInterruptConfigChange = 2;

// The status bits a driver may set; NEEDS_RESET is the device's.
constexpr uint32_t kDriverStatusBits =
    kStatusAcknowledge | kStatusDriver | kStatusDriverOk | kStatusFeaturesOk | kStatusFailed;

// A device's own saved state (a staged packet and a few chains' heads at most).
constexpr size_t kMaxDeviceStateBytes = size_t{1} << 20;

void set_low(uint64_t& field, uint32_t value) {
  field = (field & ~uint64_t{0xffffffff}) | value;
}
void set_high(uint64_t& field, uint32_t value) {
  field = (field & uint64_t{0xffffffff}) | (uint64_t{value} << 32);
}

}  // namespace

MmioTransport::MmioTransport(const GuestMemory& memory, std::unique_ptr<VirtioDevice> device,
                             InterruptLine& irq, DeviceOwner& owner, std::string name)
    : memory_(memory),
      device_(std::move(device)),
      irq_(irq),
      owner_(owner),
      name_(std::move(name)),
      device_features_(device_ ? device_->features() : 0),
      queue_max_sizes_(device_ ? device_->queue_max_sizes() : std::vector<uint16_t>{}) {
  if (!device_) fail("{}: virtio-mmio transport without a device", name_);
  MutexLock lock(registers_mutex_);
  for (uint16_t max_size : queue_max_sizes_) {
    queues_.push_back(std::make_unique<SplitQueue>(memory_, max_size));
    notifiers_.push_back(std::make_unique<EventFd>());
    queue_registers_.push_back(QueueRegisters{.size = max_size});
  }
}

MmioTransport::~MmioTransport() {
  shutdown();
}

void MmioTransport::shutdown() {
  // Nothing runs on the owner thread any more: this thread stands in for it.
  if (activated_) device_->reset([] {});
  activated_ = false;
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset >= kConfigOffset) {
    const uint64_t size = data.size();
    if (offset >= kWindowSize || size > kWindowSize - offset ||
        (size != 1 && size != 2 && size != 4 && size != 8)) {
      spdlog::debug("{}: {}-byte read at {:#x} ignored", name_, size, offset);
      return;
    }
    // Fixed at construction: no lock (VirtioDevice::read_config).
    device_->read_config(offset - kConfigOffset, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    spdlog::debug("{}: {}-byte register read at {:#x} ignored", name_, data.size(), offset);
    return;
  }
  uint32_t value;
  if (offset == kInterruptStatus) {
    value = interrupt_status_.load();  // the interrupt handler's read: no lock
  } else {
    MutexLock lock(registers_mutex_);
    value = read_register(offset);
  }
  std::memcpy(data.data(), &value, sizeof(value));
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfigOffset) {
    // No device here has a writable field (VirtioDevice::read_config).
    spdlog::debug("{}: {}-byte config write at {:#x} ignored", name_, data.size(), offset);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) {
    spdlog::debug("{}: {}-byte register write at {:#x} ignored", name_, data.size(), offset);
    return;
  }
  uint32_t value;
  std::memcpy(&value, data.data(), sizeof(value));
  if (offset == kInterruptAck) {
    interrupt_status_.fetch_and(~value);  // the interrupt handler's write: no lock
    return;
  }
  bool reset;
  {
    MutexLock lock(registers_mutex_);
    if (resetting_) {
      spdlog::debug("{}: write of {:#x} to {:#x} during a reset ignored", name_, value, offset);
      return;
    }
    reset = offset == kStatus ? write_status(value) : (write_register(offset, value), false);
  }
  if (reset) reset_and_wait();
}

uint32_t MmioTransport::status() const {
  MutexLock lock(registers_mutex_);
  return driver_status_ | (needs_reset_.load() ? kStatusNeedsReset : 0);
}

std::string MmioTransport::debug_state() const {
  std::string state;
  {
    MutexLock lock(registers_mutex_);
    state = fmt::format("status {:#x}{}{}, interrupt status {:#x}", driver_status_,
                        needs_reset_.load() ? " (needs reset)" : "",
                        resetting_ ? " (resetting)" : "", interrupt_status_.load());
  }
  for (size_t i = 0; i < queues_.size(); ++i) {
    state += fmt::format("; queue {}: {}", i, queues_[i]->debug_state());
  }
  if (const std::string device = device_->debug_state(); !device.empty()) {
    state += "; " + device;
  }
  return state;
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  switch (offset) {
    case kMagicValueReg: return kMagicValue;
    case kVersionReg: return kVersion;
    case kDeviceIdReg: return device_->device_id();
    case kVendorIdReg: return kVendorId;
    case kDeviceFeatures:
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_features_ >> (32 * device_features_sel_));
    case kQueueNumMax:
      return queue_sel_ < queue_max_sizes_.size() ? queue_max_sizes_[queue_sel_] : 0;
    case kQueueReady:
      return queue_sel_ < queue_registers_.size() && queue_registers_[queue_sel_].ready ? 1 : 0;
    case kInterruptStatus: return interrupt_status_.load();
    case kStatus: return driver_status_ | (needs_reset_.load() ? kStatusNeedsReset : 0);
    case kConfigGeneration: return config_generation_.load();
    default:
      // No shared memory regions: their length and base read as all-ones, "no such region".
      if (offset >= kShmLenLow && offset <= kShmBaseHigh) return 0xffffffff;
      spdlog::debug("{}: read of write-only or unknown register {:#x}", name_, offset);
      return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = value; return;
    case kDriverFeatures:
      if (driver_status_ & kStatusFeaturesOk) {
        spdlog::debug("{}: DriverFeatures write after FEATURES_OK ignored", name_);
      } else if (driver_features_sel_ <= 1) {
        (driver_features_sel_ == 0 ? set_low : set_high)(driver_features_, value);
      } else if (value != 0) {
        // Nothing is offered beyond bit 63: the driver accepted a feature it was not offered.
        driver_features_beyond_64_ = true;
      }
      return;
    case kDriverFeaturesSel: driver_features_sel_ = value; return;
    case kQueueSel: queue_sel_ = value; return;
    case kQueueNum:
      if (auto* queue = writable_queue("QueueNum")) queue->size = value;
      return;
    case kQueueReady: write_queue_ready(value); return;
    case kQueueNotify: write_queue_notify(value); return;
    case kQueueDescLow:
      if (auto* queue = writable_queue("QueueDescLow")) set_low(queue->desc_table, value);
      return;
    case kQueueDescHigh:
      if (auto* queue = writable_queue("QueueDescHigh")) set_high(queue->desc_table, value);
      return;
    case kQueueDriverLow:
      if (auto* queue = writable_queue("QueueDriverLow")) set_low(queue->avail_ring, value);
      return;
    case kQueueDriverHigh:
      if (auto* queue = writable_queue("QueueDriverHigh")) set_high(queue->avail_ring, value);
      return;
    case kQueueDeviceLow:
      if (auto* queue = writable_queue("QueueDeviceLow")) set_low(queue->used_ring, value);
      return;
    case kQueueDeviceHigh:
      if (auto* queue = writable_queue("QueueDeviceHigh")) set_high(queue->used_ring, value);
      return;
    // virtiofs probes for a DAX window: any region it selects reads as absent (above).
    case kShmSel: return;
    default:
      spdlog::debug("{}: write of {:#x} to read-only or unknown register {:#x} ignored", name_,
                    value, offset);
      return;
  }
}

MmioTransport::QueueRegisters* MmioTransport::writable_queue(const char* what) {
  if (queue_sel_ >= queue_registers_.size()) {
    spdlog::debug("{}: {} write for non-existent queue {} ignored", name_, what, queue_sel_);
    return nullptr;
  }
  if (driver_status_ & kStatusDriverOk) {
    spdlog::debug("{}: {} write after DRIVER_OK ignored", name_, what);
    return nullptr;
  }
  if (queue_registers_[queue_sel_].ready) {
    spdlog::debug("{}: {} write to ready queue {} ignored", name_, what, queue_sel_);
    return nullptr;
  }
  return &queue_registers_[queue_sel_];
}

void MmioTransport::write_queue_ready(uint32_t value) {
  if (queue_sel_ >= queue_registers_.size() || (driver_status_ & kStatusDriverOk) || value > 1) {
    spdlog::debug("{}: QueueReady write of {} (queue {}) ignored", name_, value, queue_sel_);
    return;
  }
  QueueRegisters& registers = queue_registers_[queue_sel_];
  if (value == 0 || registers.ready) {
    registers.ready = value == 1;
    return;
  }
  // The spec's order (3.1.1): queues are set up once the features are final, which decides the
  // ring layout (EVENT_IDX) and the descriptors allowed (INDIRECT_DESC).
  if (!(driver_status_ & kStatusFeaturesOk)) {
    spdlog::debug("{}: QueueReady for queue {} before FEATURES_OK ignored", name_, queue_sel_);
    return;
  }
  try {
    if (registers.size > std::numeric_limits<uint16_t>::max()) {
      fail("virtqueue size {} is not a power of two in 1..{}", registers.size,
           queue_max_sizes_[queue_sel_]);
    }
    SplitQueue::check(memory_, queue_max_sizes_[queue_sel_], queue_config(registers));
    registers.ready = true;
  } catch (const Error& error) {
    spdlog::warn("{}: queue {}: {}; the device needs a reset", name_, queue_sel_, error.what());
    signal_needs_reset();
  }
}

QueueConfig MmioTransport::queue_config(const QueueRegisters& registers) const {
  return QueueConfig{
      .size = static_cast<uint16_t>(registers.size),
      .desc_table = registers.desc_table,
      .avail_ring = registers.avail_ring,
      .used_ring = registers.used_ring,
      .event_idx = (driver_features_ & kFeatureRingEventIdx) != 0,
      .indirect_desc = (driver_features_ & kFeatureRingIndirectDesc) != 0,
  };
}

bool MmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    resetting_ = true;
    return true;
  }
  // A driver writing back what it read includes NEEDS_RESET; that bit is not its to change.
  value &= ~kStatusNeedsReset;
  if (value & ~kDriverStatusBits) {
    spdlog::debug("{}: undefined status bits {:#x} ignored", name_, value & ~kDriverStatusBits);
    value &= kDriverStatusBits;
  }
  if (driver_status_ & ~value) {
    spdlog::debug("{}: status write {:#x} clears bits of {:#x}: ignored", name_, value,
                  driver_status_);
    return false;
  }
  const uint32_t added = value & ~driver_status_;
  if (added & kStatusFeaturesOk) {
    // Refusing leaves FEATURES_OK clear for the driver to read back (3.1.1 step 6).
    const bool offered = (driver_features_ & ~device_features_) == 0 && !driver_features_beyond_64_;
    const bool modern = (driver_features_ & kFeatureVersion1) != 0;
    if (!offered || !modern) {
      spdlog::debug("{}: refusing driver features {:#x} (offered {:#x})", name_, driver_features_,
                    device_features_);
      value &= ~kStatusFeaturesOk;
    }
  }
  if ((added & kStatusDriverOk) && (!(value & kStatusFeaturesOk) || (value & kStatusFailed))) {
    spdlog::debug("{}: DRIVER_OK without FEATURES_OK, or with FAILED: ignored", name_);
    value &= ~kStatusDriverOk;
  }
  driver_status_ = value;
  if (value & added & kStatusDriverOk) post_activation();
  return false;
}

std::vector<QueueConfig> MmioTransport::queue_configs() const {
  std::vector<QueueConfig> queues;
  for (const QueueRegisters& registers : queue_registers_) {
    queues.push_back(registers.ready ? queue_config(registers) : QueueConfig{});
  }
  return queues;
}

void MmioTransport::post_activation() {
  if (needs_reset_.load()) {
    spdlog::warn("{}: DRIVER_OK while the device needs a reset: not activated", name_);
    return;
  }
  owner_.post([this, features = driver_features_, queues = queue_configs()] {
    activate_device(features, queues);
  });
}

Activation MmioTransport::activation(uint64_t driver_features) {
  Activation activation{.driver_features = driver_features, .queues = {}, .interrupt = this};
  for (size_t i = 0; i < queues_.size(); ++i) {
    activation.queues.push_back(queues_[i].get());
    activation.notify_fds.push_back(notifiers_[i]->fd());
  }
  return activation;
}

void MmioTransport::activate_device(uint64_t driver_features,
                                    const std::vector<QueueConfig>& queues) {
  try {
    for (size_t i = 0; i < queues_.size(); ++i) {
      // A queue the driver left out stays not ready; the others passed the same check already.
      if (queues[i].size != 0) queues_[i]->activate(queues[i]);
    }
    device_->activate(activation(driver_features));
    activated_ = true;
  } catch (const std::exception& error) {
    spdlog::warn("{}: activation failed: {}; the device needs a reset", name_, error.what());
    signal_needs_reset();
  }
}

void MmioTransport::write_queue_notify(uint32_t index) {
  // Not through an ioeventfd (a write of another width, or none registered): the same path.
  if (index >= notifiers_.size()) {
    spdlog::debug("{}: notification for non-existent queue {} ignored", name_, index);
    return;
  }
  notifiers_[index]->signal();
}

void MmioTransport::reset_and_wait() {
  reset_done_.store(false);
  owner_.post([this] { reset_device(); });
  // Until the device is done no register is touched but by us; a machine that stops meanwhile
  // leaves the transport resetting, which is all its remaining life.
  if (!owner_.wait([this] { return reset_done_.load(); })) return;
  MutexLock lock(registers_mutex_);
  reset_registers();
}

void MmioTransport::reset_registers() {
  for (size_t i = 0; i < queue_registers_.size(); ++i) {
    queue_registers_[i] = QueueRegisters{.size = queue_max_sizes_[i]};
  }
  driver_status_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  driver_features_ = 0;
  driver_features_beyond_64_ = false;
  queue_sel_ = 0;
  resetting_ = false;
}

void MmioTransport::reset_device() {
  if (!activated_) {
    finish_reset();
    return;
  }
  activated_ = false;
  device_->reset([this] { finish_reset(); });
}

void MmioTransport::finish_reset() {
  for (auto& queue : queues_) queue->reset();
  interrupt_status_.store(0);
  needs_reset_.store(false);
  reset_done_.store(true);
  owner_.wake();
}

void MmioTransport::quiesce(std::chrono::steady_clock::time_point deadline) {
  device_->quiesce(deadline);
}

void MmioTransport::save_state(StateWriter& out) const {
  bool active;
  {
    MutexLock lock(registers_mutex_);
    out.put(device_->device_id());
    out.put(static_cast<uint32_t>(queue_registers_.size()));
    out.put(driver_status_);
    out.put(device_features_sel_);
    out.put(driver_features_sel_);
    out.put(driver_features_);
    out.put_bool(driver_features_beyond_64_);
    out.put(queue_sel_);
    for (const QueueRegisters& registers : queue_registers_) {
      out.put(registers.size);
      out.put(registers.desc_table);
      out.put(registers.avail_ring);
      out.put(registers.used_ring);
      out.put_bool(registers.ready);
    }
    // A vCPU waits for the device's reset (posted to the parked loop, or waiting for I/O): the
    // restore completes it, and the device, about to be reset, has no state worth keeping.
    out.put_bool(resetting_);
    active = activated_ && !resetting_;
  }
  out.put(interrupt_status_.load());
  out.put_bool(needs_reset_.load());
  out.put(config_generation_.load());
  out.put_bool(active);
  for (const auto& queue : queues_) queue->save_state(out);
  StateWriter device;
  if (active) device_->save_state(device);
  out.put_bytes(device.bytes());
}

void MmioTransport::check_restored_registers(const StateReader& in) const {
  if (driver_status_ & ~kDriverStatusBits) {
    in.corrupt(fmt::format("status {:#x} has bits a driver cannot set", driver_status_));
  }
  const bool features_ok = (driver_status_ & kStatusFeaturesOk) != 0;
  if ((driver_status_ & kStatusDriverOk) && !features_ok) {
    in.corrupt("status has DRIVER_OK without FEATURES_OK");
  }
  if (features_ok && ((driver_features_ & ~device_features_) != 0 || driver_features_beyond_64_ ||
                      (driver_features_ & kFeatureVersion1) == 0)) {
    in.corrupt(fmt::format("driver features {:#x} are not a modern subset of the device's {:#x}",
                           driver_features_, device_features_));
  }
  for (size_t i = 0; i < queue_registers_.size(); ++i) {
    const QueueRegisters& registers = queue_registers_[i];
    if (!registers.ready) continue;
    if (!features_ok) in.corrupt(fmt::format("queue {} is ready before FEATURES_OK", i));
    try {
      if (registers.size > std::numeric_limits<uint16_t>::max()) {
        fail("virtqueue size {} is out of range", registers.size);
      }
      SplitQueue::check(memory_, queue_max_sizes_[i], queue_config(registers));
    } catch (const Error& error) {
      in.corrupt(fmt::format("queue {}: {}", i, error.what()));
    }
  }
}

void MmioTransport::restore_state(StateReader& in) {
  if (activated_ || status() != 0) fail("{}: restore into a transport already in use", name_);
  const auto device_id = in.get<uint32_t>();
  if (device_id != device_->device_id()) {
    in.corrupt(fmt::format("saved from virtio device type {}, restored into type {}", device_id,
                           device_->device_id()));
  }
  if (const auto count = in.get<uint32_t>(); count != queues_.size()) {
    in.corrupt(fmt::format("saved with {} queue(s), the device has {}", count, queues_.size()));
  }
  bool resetting;
  bool driver_ok;
  uint64_t driver_features;
  std::vector<QueueConfig> configs;
  {
    MutexLock lock(registers_mutex_);
    driver_status_ = in.get<uint32_t>();
    device_features_sel_ = in.get<uint32_t>();
    driver_features_sel_ = in.get<uint32_t>();
    driver_features_ = in.get<uint64_t>();
    driver_features_beyond_64_ = in.get_bool();
    queue_sel_ = in.get<uint32_t>();
    for (QueueRegisters& registers : queue_registers_) {
      registers.size = in.get<uint32_t>();
      registers.desc_table = in.get<uint64_t>();
      registers.avail_ring = in.get<uint64_t>();
      registers.used_ring = in.get<uint64_t>();
      registers.ready = in.get_bool();
    }
    resetting = in.get_bool();
    check_restored_registers(in);
    driver_ok = (driver_status_ & kStatusDriverOk) != 0;
    driver_features = driver_features_;
    configs = queue_configs();
  }
  const auto interrupt_status =
      in.get_at_most<uint32_t>(kInterruptUsedBuffer | kInterruptConfigChange, "InterruptStatus");
  const bool needs_reset = in.get_bool();
  const auto config_generation = in.get<uint32_t>();
  const bool active = in.get_bool();
  for (auto& queue : queues_) queue->restore_state(in);
  const std::vector<uint8_t> device_state = in.get_bytes(kMaxDeviceStateBytes);

  if (active && (resetting || !driver_ok)) {
    in.corrupt("the device is active without DRIVER_OK, or while being reset");
  }
  if (!active && !device_state.empty()) in.corrupt("state of a device that was not active");
  for (size_t i = 0; i < queues_.size(); ++i) {
    // Queues become ready with the device, as their registers say.
    if (queues_[i]->ready() ? queues_[i]->config() != configs[i] : active && configs[i].size != 0) {
      in.corrupt(fmt::format("queue {} does not match its registers", i));
    }
  }
  interrupt_status_.store(interrupt_status);
  needs_reset_.store(needs_reset);
  config_generation_.store(config_generation);

  if (resetting) {
    // The vCPU that wrote status 0 has seen its write done: so is the reset.
    for (auto& queue : queues_) queue->reset();
    interrupt_status_.store(0);
    needs_reset_.store(false);
    MutexLock lock(registers_mutex_);
    reset_registers();
    return;
  }
  if (active) {
    device_->activate(activation(driver_features));
    activated_ = true;
    StateReader device_in(device_state, in.what());
    device_->restore_state(device_in);
    device_in.expect_end();
  } else if (driver_ok && !needs_reset) {
    // DRIVER_OK whose activation had not reached the owner thread: it does now.
    activate_device(driver_features, configs);
  }
  if (activated_) {
    for (auto& notifier : notifiers_) notifier->signal();
  }
  // The old process's edge may not have reached the guest, whose driver has not acknowledged it.
  if (interrupt_status != 0) irq_.pulse();
}

void MmioTransport::signal_used() {
  interrupt_status_.fetch_or(kInterruptUsedBuffer);
  irq_.pulse();
}

void MmioTransport::signal_config_change() {
  // Bumped after the device changed its config, so a driver reading it across the change sees
  // a different generation and reads again (4.2.2, ConfigGeneration).
  config_generation_.fetch_add(1);
  interrupt_status_.fetch_or(kInterruptConfigChange);
  irq_.pulse();
}

void MmioTransport::signal_needs_reset() {
  needs_reset_.store(true);
  interrupt_status_.fetch_or(kInterruptConfigChange);
  irq_.pulse();
}

}  // namespace vmm::devices::virtio
