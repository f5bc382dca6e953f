#include "devices/virtio/block.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>

#include "base/util/error.hpp"

namespace vmm::devices::virtio {

namespace {

// discard_sector_alignment: 4 KiB, the block size of the usual host file systems, below which a
// punched hole only zeroes.
constexpr uint32_t kDiscardAlignmentSectors = 8;

// The source of the write-zeroes fallback; pwritev only reads it.
alignas(4096) const uint8_t kZeros[kBlkZeroChunk] = {};

}  // namespace

VirtioBlock::VirtioBlock(const GuestMemory& memory, EventLoop& loop, uint64_t disk_size,
                         std::unique_ptr<AsyncIo> io, BlockOptions options, std::string name)
    : memory_(memory),
      loop_(loop),
      io_(std::move(io)),
      options_(std::move(options)),
      name_(std::move(name)) {
  config_.capacity = disk_size / kSectorSize;
  config_.size_max = kBlkSizeMax;
  config_.seg_max = kBlkSegMax;
  config_.blk_size = kSectorSize;
  config_.max_discard_sectors = kBlkMaxDiscardSectors;
  config_.max_discard_seg = 1;
  config_.discard_sector_alignment = kDiscardAlignmentSectors;
  config_.max_write_zeroes_sectors = kBlkMaxWriteZeroesSectors;
  config_.max_write_zeroes_seg = 1;
  config_.write_zeroes_may_unmap = 1;
  if (disk_size % kSectorSize != 0) {
    spdlog::warn("virtio-blk {}: the last {} bytes of the image (a partial sector) are not exposed",
                 name_, disk_size % kSectorSize);
  }
}

VirtioBlock::~VirtioBlock() {
  // The host must stop writing into guest memory before it may be unmapped.
  io_->wait_all([](const IoCompletion&) {});
}

uint64_t VirtioBlock::features() const {
  uint64_t features = kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc |
                      kBlkFeatureSegMax | kBlkFeatureSizeMax | kBlkFeatureBlkSize |
                      kBlkFeatureFlush;
  if (options_.read_only) {
    features |= kBlkFeatureRo;
  } else {
    features |= kBlkFeatureDiscard | kBlkFeatureWriteZeroes;
  }
  return features;
}

void VirtioBlock::read_config(uint64_t offset, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= sizeof(config_)) return;
  const size_t bytes = std::min<uint64_t>(data.size(), sizeof(config_) - offset);
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&config_) + offset, bytes);
}

void VirtioBlock::activate(const Activation& activation) {
  queue_ = activation.queues.at(0);
  interrupt_ = activation.interrupt;
  limits_ = BlockLimits{
      .capacity_sectors = config_.capacity,
      .read_only = options_.read_only,
      .discard = (activation.driver_features & kBlkFeatureDiscard) != 0,
      .write_zeroes = (activation.driver_features & kBlkFeatureWriteZeroes) != 0,
  };
  write_through_ = (activation.driver_features & kBlkFeatureFlush) == 0;
  queue_failed_ = false;
  watch(activation.notify_fds);
}

void VirtioBlock::watch(const std::vector<int>& notify_fds) {
  watched_.clear();
  watched_.add_notify_fds(notify_fds, [this](uint16_t queue) { notify(queue); });
  watched_.add(io_->completion_fd(), EPOLLIN, [this](uint32_t) { on_completions(); });
  watched_.add(resume_.fd(), EPOLLIN, [this](uint32_t) {
    resume_.consume();
    notify(0);
  });
  throttle_.watch(watched_, [this] { notify(0); });
}

std::string VirtioBlock::debug_state() const {
  return fmt::format("{} request(s) in flight ({}){}{}", io_->in_flight(), io_->name(),
                     throttle_.waiting() ? ", waiting for its rate limit" : "",
                     reset_done_ ? ", resetting" : "");
}

void VirtioBlock::notify(uint16_t index) {
  if (index != 0) return;
  start_available();
  notify_driver();
}

void VirtioBlock::start_available() {
  if (queue_ == nullptr || queue_failed_ || !queue_->ready()) return;
  // A driver that makes a head available again while it is still in flight (a bug, or hostile)
  // could otherwise keep more requests in flight than the engine has room for: what stays in the
  // ring is started when completions make room.
  // With EVENT_IDX, pop() re-arms avail_event when it finds the ring drained and looks once more,
  // so popping until nothing is left cannot miss a buffer made available meanwhile.
  // Requests refused or malformed complete at once, so the in-flight cap alone would not bound a
  // driver that keeps the ring full: one queue's worth per wake-up, then the loop's other work.
  // A chain over the rate limit is held and goes first once the limit's timer fires.
  uint32_t budget = queue_->config().size;
  // Else completions make room, or the timer fires, and call us again.
  while (in_flight_.size() < kQueueSize && !throttle_.waiting()) {
    if (budget-- == 0) {
      resume_.signal();
      break;
    }
    auto chain = throttled_ ? std::exchange(throttled_, std::nullopt) : queue_->pop();
    if (!chain) break;
    BlockRequest request = parse_block_request(memory_, *chain, limits_);
    const bool transfer =
        request.kind == BlockRequest::Kind::kRead || request.kind == BlockRequest::Kind::kWrite;
    const uint64_t bytes = transfer ? request.length : 0;
    if (!throttle_.allows(bytes)) {
      throttled_ = std::move(chain);
      break;
    }
    throttle_.take(bytes);
    start(std::move(*chain), std::move(request));
  }
  check_broken();
  io_->flush_submissions();
}

void VirtioBlock::reset(ResetDone done) {
  // The chains are given up: the driver no longer expects them. The requests still in flight may
  // write into guest memory until they complete; their completions find no request and are
  // dropped, and the reset is done when the last one has come in.
  for (auto& [cookie, request] : in_flight_) std::move(request.chain).discard();
  in_flight_.clear();
  if (throttled_) std::move(*throttled_).discard();
  throttled_.reset();
  throttle_.cancel();
  pending_.clear();
  queue_ = nullptr;
  interrupt_ = nullptr;
  queue_failed_ = false;
  reset_done_ = std::move(done);
  io_->cancel_all();
  finish_reset_if_idle();
}

void VirtioBlock::finish_reset_if_idle() {
  if (!reset_done_ || io_->in_flight() > 0) return;
  watched_.clear();
  resume_.consume();
  std::exchange(reset_done_, nullptr)();
}

void VirtioBlock::start(DescriptorChain chain, BlockRequest request) {
  using Kind = BlockRequest::Kind;
  switch (request.kind) {
    case Kind::kRefused: {
      const BlockErrorPolicy policy = report(request.error, chain.head(), request.detail);
      if (!policy.has_status) {
        queue_->add_used(std::move(chain), 0);
        metrics_.count_error();
      } else {
        complete(std::move(chain), request.status_offset, 0, policy.status, 0);
      }
      return;
    }
    case Kind::kGetId: {
      std::array<uint8_t, kBlkIdBytes> id{};
      std::memcpy(id.data(), options_.serial.data(),
                  std::min<size_t>(options_.serial.size(), id.size()));
      const size_t bytes = chain.write(0, std::span<const uint8_t>(id).first(
                                              std::min<size_t>(id.size(), request.status_offset)));
      complete(std::move(chain), request.status_offset, static_cast<uint32_t>(bytes), kBlkStatusOk,
               bytes);
      return;
    }
    default: break;
  }

  const bool is_transfer = request.kind == Kind::kRead || request.kind == Kind::kWrite;
  if (request.kind != Kind::kFlush && request.length == 0) {
    // Nothing to move (and fallocate refuses an empty range).
    complete(std::move(chain), request.status_offset, 0, kBlkStatusOk, 0);
    return;
  }
  Stage stage = Stage::kFlush;
  IoRequest io;
  io.offset = request.offset;
  io.length = request.length;
  switch (request.kind) {
    case Kind::kRead:
    case Kind::kWrite:
      stage = Stage::kTransfer;
      io.op = request.kind == Kind::kRead ? IoRequest::Op::kRead : IoRequest::Op::kWrite;
      io.length = 0;
      io.buffers = std::move(request.data);
      break;
    case Kind::kFlush:
      io.op = IoRequest::Op::kFlush;
      io.offset = 0;
      io.length = 0;
      break;
    case Kind::kDiscard:
      stage = Stage::kDiscard;
      io.op = IoRequest::Op::kPunchHole;
      break;
    default:  // kWriteZeroes
      stage = request.unmap ? Stage::kPunchZeros : Stage::kZeroRange;
      io.op = request.unmap ? IoRequest::Op::kPunchHole : IoRequest::Op::kZeroRange;
      break;
  }
  const uint64_t cookie = next_cookie_++;
  in_flight_.emplace(cookie,
                     InFlight{
                         .chain = std::move(chain),
                         .stage = stage,
                         .offset = request.offset,
                         .length = request.length,
                         .expected = is_transfer ? request.length : 0,
                         .status_offset = request.status_offset,
                         .data_written = 0,
                         .payload = is_transfer ? request.length : 0,
                         .modifies = request.kind != Kind::kRead && request.kind != Kind::kFlush,
                     });
  io.cookie = cookie;
  io_->submit(std::move(io));
}

BlockErrorPolicy VirtioBlock::report(BlockError error, uint16_t head, const std::string& detail) {
  const BlockErrorPolicy policy = block_error_policy(error);
  // The guest decides how many there are: the first of each kind at the policy's level.
  const auto kind = static_cast<size_t>(error);
  const auto level = reported_.test(kind) ? spdlog::level::debug : policy.level;
  reported_.set(kind);
  spdlog::log(level, "virtio-blk {}: request {}: {}{}{}{}", name_, head, block_error_name(error),
              detail.empty() ? "" : " (", detail, detail.empty() ? "" : ")",
              level == policy.level && level != spdlog::level::debug
                  ? "; further ones are logged at debug level"
                  : "");
  return policy;
}

std::optional<uint8_t> VirtioBlock::advance(InFlight& request, int64_t result) {
  auto next = [&](Stage stage, IoRequest io) -> std::optional<uint8_t> {
    request.stage = stage;
    pending_.push_back(std::move(io));
    return std::nullopt;
  };
  auto flush = [&]() {
    IoRequest io;
    io.op = IoRequest::Op::kFlush;
    return io;
  };
  auto range = [&](IoRequest::Op op) {
    IoRequest io;
    io.op = op;
    io.offset = request.offset;
    io.length = request.length;
    return io;
  };
  auto failed = [&]() -> std::optional<uint8_t> {
    const bool short_transfer = result >= 0;
    return report(short_transfer ? BlockError::kShortTransfer : BlockError::kHostIo,
                  request.chain.head(),
                  short_transfer ? fmt::format("{} of {} bytes", result, request.expected)
                                 : std::strerror(static_cast<int>(-result)))
        .status;
  };
  // A successful modifying stage: done, or made durable first when writing through.
  auto succeeded = [&]() -> std::optional<uint8_t> {
    if (request.modifies && write_through_) return next(Stage::kFlush, flush());
    return kBlkStatusOk;
  };

  switch (request.stage) {
    case Stage::kTransfer:
      if (!request.modifies && result > 0) request.data_written = static_cast<uint32_t>(result);
      if (result < 0 || static_cast<uint64_t>(result) != request.expected) return failed();
      return succeeded();
    case Stage::kFlush: return result < 0 ? failed() : kBlkStatusOk;
    case Stage::kDiscard:
      // Discard only allows deallocation: a file system that cannot punch holes did its part.
      if (result < 0 && result != -EOPNOTSUPP) return failed();
      return succeeded();
    case Stage::kPunchZeros:
      if (result == -EOPNOTSUPP) return next(Stage::kZeroRange, range(IoRequest::Op::kZeroRange));
      if (result < 0) return failed();
      return succeeded();
    case Stage::kZeroRange:
      if (result == -EOPNOTSUPP) {
        IoRequest io = range(IoRequest::Op::kWrite);
        io.length = 0;
        for (uint64_t done = 0; done < request.length; done += kBlkZeroChunk) {
          io.buffers.push_back(
              {const_cast<uint8_t*>(kZeros), std::min(kBlkZeroChunk, request.length - done)});
        }
        request.expected = request.length;
        return next(Stage::kWriteZeros, std::move(io));
      }
      if (result < 0) return failed();
      return succeeded();
    case Stage::kWriteZeros:
      if (result < 0 || static_cast<uint64_t>(result) != request.expected) return failed();
      return succeeded();
  }
  return failed();
}

void VirtioBlock::on_completions() {
  reap_completions();
  if (reset_done_) {
    finish_reset_if_idle();
    return;
  }
  start_available();
  notify_driver();
}

void VirtioBlock::reap_completions() {
  io_->reap([this](const IoCompletion& completion) {
    auto it = in_flight_.find(completion.cookie);
    if (it == in_flight_.end()) return;  // a request from before a reset
    InFlight& request = it->second;
    const size_t queued = pending_.size();
    auto status = advance(request, completion.result);
    if (!status) {
      pending_[queued].cookie = completion.cookie;
      return;
    }
    complete(std::move(request.chain), request.status_offset, request.data_written, *status,
             request.payload);
    in_flight_.erase(it);
  });
  // Follow-up stages are submitted after reap(), not from inside its callback (none during a
  // reset: its completions find no request).
  for (IoRequest& io : pending_) io_->submit(std::move(io));
  pending_.clear();
  io_->flush_submissions();
}

void VirtioBlock::quiesce(std::chrono::steady_clock::time_point deadline) {
  // What is in flight (a reset's cancelled requests included) runs to its end; nothing new is
  // popped: the chains the driver made available wait in the ring, which the snapshot holds.
  while (io_->in_flight() > 0) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      fail("virtio-blk {}: {} request(s) still in flight when the wait for them ran out", name_,
           io_->in_flight());
    }
    pollfd completions{.fd = io_->completion_fd(), .events = POLLIN, .revents = 0};
    if (::poll(&completions, 1, static_cast<int>(std::min<int64_t>(left.count(), INT_MAX))) < 0 &&
        errno != EINTR) {
      throw_errno(fmt::format("virtio-blk {}: waiting for the requests in flight", name_));
    }
    reap_completions();
    if (reset_done_) finish_reset_if_idle();
  }
  notify_driver();
  // Chains may wait in the ring for the room just made: the loop looks once it runs again.
  if (queue_ != nullptr) resume_.signal();
}

void VirtioBlock::save_state(StateWriter& out) const {
  if (!in_flight_.empty()) {
    fail("virtio-blk {}: {} request(s) in flight: a snapshot quiesces the device first", name_,
         in_flight_.size());
  }
  // At most the chain held for the rate limit: the restore checks that the queue has no other
  // chain in use.
  SplitQueue::save_chains(out, held(throttled_));
}

void VirtioBlock::restore_state(StateReader& in) {
  queue_failed_ = queue_->broken();  // reported before the snapshot
  std::vector<DescriptorChain> chains = queue_->restore_chains(in, 1);
  if (!chains.empty()) {
    throttled_ = std::move(chains.front());
    resume_.signal();  // started once the loop runs
  }
}

void VirtioBlock::complete(DescriptorChain&& chain, uint32_t status_offset, uint32_t data_written,
                           uint8_t status, uint64_t payload) {
  chain.write(status_offset, std::span<const uint8_t>(&status, 1));
  queue_->add_used(std::move(chain), data_written + 1);
  if (status == kBlkStatusOk) {
    metrics_.count_request(payload);
  } else {
    metrics_.count_error();
  }
}

void VirtioBlock::notify_driver() {
  if (queue_ != nullptr && queue_->needs_notification()) interrupt_->signal_used();
}

void VirtioBlock::check_broken() {
  if (queue_failed_ || !queue_->broken()) return;
  queue_failed_ = true;
  metrics_.count_error();
  spdlog::error("virtio-blk {}: {}; the device needs a reset", name_, queue_->broken_reason());
  interrupt_->signal_needs_reset();
}

}  // namespace vmm::devices::virtio
