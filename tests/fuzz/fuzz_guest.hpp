#pragma once

// Shared pieces of the fuzz targets: libFuzzer's entry points (VMM_FUZZ_TARGET), a reader that
// turns the fuzzer's bytes into operations, fuzzer-controlled guest RAM, a driver that writes
// descriptors and rings into it the way a (hostile) guest driver would, and the small fakes the
// devices need (interrupts, platform events, a synchronous AsyncIo on a memfd; the packet backend
// over a socketpair is the unit tests', tests/devices/fakes.hpp).
//
// A broken invariant is reported with check(): it prints what failed and aborts, which libFuzzer
// records as a crash with the input that caused it.

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/memory/guest_memory.hpp"
#include "base/util/error.hpp"
#include "base/util/event_fd.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/backends/async_io.hpp"
#include "devices/backends/packet_backend.hpp"
#include "devices/interrupt_line.hpp"
#include "devices/platform_events.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::fuzz {

#define VMM_FUZZ_CHECK(condition, ...)                                                 \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      std::fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #condition);                                                        \
      std::fprintf(stderr, __VA_ARGS__);                                               \
      std::fprintf(stderr, "\n");                                                      \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)

// The devices log every guest mistake; at fuzzing rates that is all the time is spent on.
inline void quiet_logs() {
  spdlog::set_level(spdlog::level::off);
}

// Reads the input front to back; past its end every value reads as zero, so any prefix of an
// input is itself a valid input (libFuzzer truncates inputs freely).
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return empty() ? 0 : size_ - pos_; }

  template <typename T>
  T read() {
    T value{};
    const size_t n = std::min(sizeof(T), remaining());
    std::memcpy(&value, data_ + pos_, n);
    pos_ += n;
    return value;
  }
  uint8_t u8() { return read<uint8_t>(); }
  uint16_t u16() { return read<uint16_t>(); }
  uint32_t u32() { return read<uint32_t>(); }
  uint64_t u64() { return read<uint64_t>(); }
  bool flag() { return u8() & 1; }
  // Up to `n` bytes (fewer at the end of the input).
  std::span<const uint8_t> bytes(size_t n) {
    n = std::min(n, remaining());
    std::span<const uint8_t> out(data_ + pos_, n);
    pos_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Plays one input through a target's Harness: its constructor reads the configuration at the
// front of the input, run() the operations after it.
template <typename Harness>
void run_harness(Reader& in) {
  Harness(in).run();
}

// Guest RAM at guest-physical 0, zeroed for each input. The buffer is kept across inputs (one
// FuzzRam at a time per process): a fresh megabyte per input costs page faults that dominate a
// device target's run time.
class FuzzRam {
 public:
  explicit FuzzRam(uint64_t size)
      : bytes_(buffer(size)), memory_(GuestMemory::from_regions({{0, size, bytes_.data()}})) {
    std::memset(bytes_.data(), 0, size);
  }
  FuzzRam(const FuzzRam&) = delete;
  FuzzRam& operator=(const FuzzRam&) = delete;

  const GuestMemory& memory() const { return memory_; }
  uint64_t size() const { return bytes_.size(); }
  // Writes what fits of `data` at `gpa` (clamped into RAM: the fuzzer picks any offset).
  void write_clamped(uint64_t gpa, std::span<const uint8_t> data) {
    if (gpa >= size()) return;
    const size_t n = std::min<uint64_t>(data.size(), size() - gpa);
    std::memcpy(bytes_.data() + gpa, data.data(), n);
  }
  void zero(uint64_t gpa, uint64_t len) {
    if (gpa >= size()) return;
    std::memset(bytes_.data() + gpa, 0, std::min(len, size() - gpa));
  }

 private:
  static std::vector<uint8_t>& buffer(uint64_t size) {
    static std::vector<uint8_t> bytes;
    if (bytes.size() != size) bytes = std::vector<uint8_t>(size);
    return bytes;
  }

  std::vector<uint8_t>& bytes_;
  GuestMemory memory_;
};

// A guest address for a device's buffer or indirect table. The data area must be the top of
// RAM (at least 16 KiB): buffers then lie in it or outside RAM, never on the rings, so only the
// device's used-ring logic writes the used ring and check_used() can hold it to account.
inline uint64_t pick_address(Reader& in, uint64_t data_base, uint64_t ram_size) {
  const uint32_t choice = in.u32();
  switch (choice >> 30) {
    case 0:
    case 1: return data_base + (choice % (ram_size - data_base));
    case 2: return ram_size - 0x4000 + (choice & 0xffff);  // across the end of RAM
    default: return ~uint64_t{0} - (choice & 0xffff);      // near 2^64: overflow checks
  }
}

// Plays the driver of one split queue: writes descriptors and avail ring entries into RAM, and
// checks what the device puts in the used ring.
class QueueDriver {
 public:
  QueueDriver(const GuestMemory& memory, const devices::virtio::QueueConfig& config)
      : memory_(&memory), config_(config) {}

  const devices::virtio::QueueConfig& config() const { return config_; }

  void desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
    memory_->write_obj(config_.desc_table + 16ull * (index & (config_.size - 1)),
                       devices::virtio::VirtqDesc{addr, len, flags, next});
  }
  // Makes `head` available and publishes the new avail->idx.
  void publish(uint16_t head) {
    write16(config_.avail_ring + 4 + 2ull * (avail_idx_ & (config_.size - 1)), head);
    advance(1);
  }
  // Moves avail->idx on by `count` without writing the slots (the device reads stale heads).
  void advance(uint16_t count) {
    avail_idx_ = static_cast<uint16_t>(avail_idx_ + count);
    published_ += count;
    write16(config_.avail_ring + 2, avail_idx_);
  }
  void set_avail_flags(uint16_t flags) { write16(config_.avail_ring, flags); }
  void set_used_event(uint16_t idx) { write16(config_.avail_ring + 4 + 2ull * config_.size, idx); }

  uint16_t avail_idx() const { return avail_idx_; }
  uint16_t used_idx() const { return read16(config_.used_ring + 2); }

  // The device reset the queue: the driver starts over with clean rings.
  void restart() {
    avail_idx_ = 0;
    published_ = 0;
    seen_used_ = 0;
    write16(config_.avail_ring, 0);
    write16(config_.avail_ring + 2, 0);
    write16(config_.used_ring + 2, 0);
  }

  // Checks the entries the device added to the used ring since the last call: never more than
  // the driver made available, each naming a descriptor inside the table.
  void check_used() {
    const uint16_t used = used_idx();
    const uint16_t added = static_cast<uint16_t>(used - static_cast<uint16_t>(seen_used_));
    VMM_FUZZ_CHECK(seen_used_ + added <= published_,
                   "used->idx %u: %llu entries used, only %llu made available", used,
                   static_cast<unsigned long long>(seen_used_ + added),
                   static_cast<unsigned long long>(published_));
    for (uint16_t i = 0; i < added; ++i) {
      const uint16_t slot = static_cast<uint16_t>(seen_used_ + i) & (config_.size - 1);
      const auto elem =
          memory_->read_obj<devices::virtio::VirtqUsedElem>(config_.used_ring + 4 + 8ull * slot);
      VMM_FUZZ_CHECK(elem && elem->id < config_.size, "used entry %u names descriptor %u", slot,
                     elem ? elem->id : 0);
    }
    seen_used_ += added;
  }
  uint64_t used_total() const { return seen_used_; }
  uint64_t published_total() const { return published_; }

 private:
  void write16(uint64_t gpa, uint16_t value) { memory_->write_obj(gpa, value); }
  uint16_t read16(uint64_t gpa) const { return memory_->read_obj<uint16_t>(gpa).value_or(0); }

  const GuestMemory* memory_;
  devices::virtio::QueueConfig config_;
  uint16_t avail_idx_ = 0;
  uint64_t published_ = 0;  // entries made available since the last restart
  uint64_t seen_used_ = 0;  // entries the device returned since the last restart
};

class FakeInterruptLine final : public devices::InterruptLine {
 public:
  void set_level(bool asserted) override { level = asserted; }
  uint32_t gsi() const override { return 5; }
  bool level = false;
};

// Counts what the guest asked of the platform (reset, power off, panic, debug exit).
class FakePlatformEvents final : public devices::PlatformEvents {
 public:
  void guest_request(devices::GuestRequest, int) override { ++requests; }
  uint64_t requests = 0;
};

class FakeDeviceInterrupt final : public devices::virtio::DeviceInterrupt {
 public:
  void signal_used() override { ++used; }
  void signal_config_change() override { ++config_changes; }
  void signal_needs_reset() override { ++needs_reset; }
  uint64_t used = 0;
  uint64_t config_changes = 0;
  uint64_t needs_reset = 0;
};

// An anonymous in-memory file (nothing is left on disk), `size` bytes of a pattern.
inline UniqueFd memfd_with_pattern(const char* name, uint64_t size) {
  UniqueFd fd(memfd_create(name, MFD_CLOEXEC));
  if (fd.get() < 0) throw_errno("memfd_create");
  std::vector<uint8_t> bytes(size);
  for (uint64_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(i * 7 + i / 512 + 1);
  if (pwrite(fd.get(), bytes.data(), size, 0) != static_cast<ssize_t>(size)) throw_errno("pwrite");
  return fd;
}

// Executes each request synchronously on the file when submissions are flushed, then signals
// its eventfd like a real engine. `fail_next` lets the fuzzer inject an error or short transfer.
class SyncIo final : public devices::AsyncIo {
 public:
  SyncIo(int fd, size_t depth) : fd_(fd), depth_(depth) {}

  std::string name() const override { return "fuzz"; }
  void submit(devices::IoRequest request) override {
    VMM_FUZZ_CHECK(in_flight() < depth_, "more than %zu requests in flight", depth_);
    queued_.push_back(std::move(request));
  }
  void flush_submissions() override {
    for (const devices::IoRequest& request : queued_)
      done_.push_back({request.cookie, execute(request)});
    if (!queued_.empty()) event_.signal();
    queued_.clear();
  }
  int completion_fd() const override { return event_.fd(); }
  size_t reap(const std::function<void(const devices::IoCompletion&)>& on_complete) override {
    event_.consume();
    const std::vector<devices::IoCompletion> done = std::move(done_);
    done_.clear();
    for (const devices::IoCompletion& completion : done) on_complete(completion);
    return done.size();
  }
  size_t in_flight() const override { return queued_.size() + done_.size(); }
  // Nothing is ever under way: what is queued completes at once, cancelled.
  void cancel_all() override {
    for (const devices::IoRequest& request : queued_) done_.push_back({request.cookie, -ECANCELED});
    if (!queued_.empty()) event_.signal();
    queued_.clear();
  }
  void wait_all(const std::function<void(const devices::IoCompletion&)>& on_complete) override {
    flush_submissions();
    reap(on_complete);
  }

  std::optional<int64_t> next_result;  // replaces the result of the next request

 private:
  int64_t execute(const devices::IoRequest& request) {
    const int64_t result = devices::execute_blocking(fd_, request);
    if (next_result) return *std::exchange(next_result, std::nullopt);
    return result;
  }

  int fd_;
  size_t depth_;
  EventFd event_;
  std::vector<devices::IoRequest> queued_;
  std::vector<devices::IoCompletion> done_;
};

}  // namespace vmm::fuzz

// libFuzzer's two entry points, for a target whose `run` plays one input from a Reader (a
// function, or run_harness<Harness>): the logs are silenced once, then each input goes to `run`.
#define VMM_FUZZ_TARGET(run)                                                \
  extern "C" int LLVMFuzzerInitialize(int*, char***) {                      \
    vmm::fuzz::quiet_logs();                                                \
    return 0;                                                               \
  }                                                                         \
  extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { \
    vmm::fuzz::Reader in(data, size);                                       \
    (run)(in);                                                              \
    return 0;                                                               \
  }
