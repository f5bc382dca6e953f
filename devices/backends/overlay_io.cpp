#include "devices/backends/overlay_io.hpp"

#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <limits>

#include "base/util/error.hpp"

namespace vmm::devices {

namespace {

constexpr uint64_t kBitsPerWord = 64;

bool is_modifying(IoRequest::Op op) {
  return op == IoRequest::Op::kWrite || op == IoRequest::Op::kPunchHole ||
         op == IoRequest::Op::kZeroRange;
}

}  // namespace

SectorBitmap::SectorBitmap(uint64_t sectors) : sectors_(sectors) {
  const uint64_t words = sectors / kBitsPerWord + (sectors % kBitsPerWord != 0 ? 1 : 0);
  if (words == 0) return;
  // Anonymous pages read as zeros (every sector clear) and take memory only once written.
  void* p = ::mmap(nullptr, words * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw_errno(fmt::format("snapshot overlay: a bitmap of {} sectors", sectors));
  words_ = static_cast<uint64_t*>(p);
  mapped_bytes_ = words * sizeof(uint64_t);
}

SectorBitmap::~SectorBitmap() {
  if (words_ != nullptr) ::munmap(words_, mapped_bytes_);
}

bool SectorBitmap::test(uint64_t sector) const {
  return (words_[sector / kBitsPerWord] >> (sector % kBitsPerWord) & 1) != 0;
}

void SectorBitmap::set(uint64_t first, uint64_t count) {
  for (uint64_t sector = first; sector < first + count;) {
    const uint64_t bit = sector % kBitsPerWord;
    const uint64_t bits = std::min(kBitsPerWord - bit, first + count - sector);
    const uint64_t mask = bits == kBitsPerWord ? ~uint64_t{0} : ((uint64_t{1} << bits) - 1) << bit;
    words_[sector / kBitsPerWord] |= mask;
    sector += bits;
  }
}

uint64_t SectorBitmap::run_end(uint64_t first, uint64_t limit) const {
  const bool value = test(first);
  for (uint64_t sector = first; sector < limit;) {
    const uint64_t bit = sector % kBitsPerWord;
    // The word's bits from `sector` on, with 1 wherever a sector is as `first` is.
    const uint64_t same =
        (value ? words_[sector / kBitsPerWord] : ~words_[sector / kBitsPerWord]) >> bit;
    const auto run = static_cast<uint64_t>(std::countr_one(same));
    if (run < kBitsPerWord - bit) return std::min(limit, sector + run);
    sector += kBitsPerWord - bit;
  }
  return limit;
}

OverlayIo::OverlayIo(int base_fd, std::shared_ptr<SnapshotOverlay> overlay, unsigned depth,
                     Engine engine, ThreadStartHook on_thread_start)
    : base_fd_(base_fd),
      overlay_(std::move(overlay)),
      depth_(depth),
      disk_bytes_(overlay_->written.sectors() * SectorBitmap::kSectorSize),
      // A read that spans written and unwritten sectors takes a part per run: room for two parts
      // a request lets the usual mixed reads run whole without waiting for the engine.
      inner_(AsyncIo::create(overlay_->fd.get(), 2 * depth, engine, std::move(on_thread_start),
                             std::span<const int>(&base_fd_, 1))),
      requests_(depth),
      parts_(2 * depth) {
  free_requests_.reserve(depth);
  for (uint32_t index = depth; index > 0; --index) free_requests_.push_back(index - 1);
  free_parts_.reserve(parts_.size());
  for (auto index = static_cast<uint32_t>(parts_.size()); index > 0; --index) {
    free_parts_.push_back(index - 1);
  }
}

OverlayIo::~OverlayIo() {
  try {
    wait_all([](const IoCompletion&) {});
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
  }
}

void OverlayIo::submit(IoRequest io) {
  if (free_requests_.empty()) fail("snapshot overlay I/O: more than {} requests in flight", depth_);
  const uint32_t index = free_requests_.back();
  free_requests_.pop_back();
  Request& request = requests_[index];
  request = Request{};
  request.io = std::move(io);
  const IoRequest& r = request.io;
  if (r.op == IoRequest::Op::kRead || r.op == IoRequest::Op::kWrite) {
    for (const iovec& buffer : r.buffers) request.length += buffer.iov_len;
  } else if (is_modifying(r.op)) {
    request.length = r.length;
  }
  request.transferred = request.length;
  // The bitmap knows whole sectors of the disk only; the request's own fd would bypass it.
  const bool beyond = request.length > std::numeric_limits<uint64_t>::max() - r.offset;
  const bool unaligned = r.offset % SectorBitmap::kSectorSize != 0 ||
                         request.length % SectorBitmap::kSectorSize != 0 ||
                         r.offset + request.length > disk_bytes_;
  if (r.fd != -1 || beyond || (is_modifying(r.op) && unaligned)) request.error = -EINVAL;
  request.waiting = true;
  waiting_.push_back(index);
  issue_waiting();
}

bool OverlayIo::has_parts_left(const Request& request) {
  // After an error nothing more is transferred, but a request with nothing in the engine still
  // needs a part to complete through.
  return (request.error == 0 && request.issued < request.length) || request.parts_in_flight == 0;
}

std::vector<iovec> OverlayIo::take_buffers(Request& request, uint64_t length) {
  std::vector<iovec> taken;
  const std::vector<iovec>& buffers = request.io.buffers;
  while (length > 0 && request.buffer_index < buffers.size()) {
    const iovec& buffer = buffers[request.buffer_index];
    const uint64_t bytes = std::min(buffer.iov_len - request.buffer_offset, length);
    if (bytes > 0)
      taken.push_back({static_cast<uint8_t*>(buffer.iov_base) + request.buffer_offset, bytes});
    length -= bytes;
    request.buffer_offset += bytes;
    if (request.buffer_offset == buffer.iov_len) {
      ++request.buffer_index;
      request.buffer_offset = 0;
    }
  }
  return taken;
}

void OverlayIo::issue_part(uint32_t index) {
  Request& request = requests_[index];
  const uint32_t part_index = free_parts_.back();
  Part& part = parts_[part_index];
  part = Part{index, request.issued, 0};
  IoRequest io;
  io.cookie = part_index;
  io.fd = overlay_->fd.get();
  if (request.error != 0 || request.issued >= request.length) {
    // Nothing (more) to transfer: a flush, an empty request, or one that failed or was cancelled.
    io.op = IoRequest::Op::kNop;
    request.issued = request.length;
  } else if (request.io.op == IoRequest::Op::kRead) {
    const uint64_t position = request.io.offset + request.issued;
    const uint64_t end = request.io.offset + request.length;
    uint64_t part_end = end;  // past the tracked sectors (a trailing partial one): the base's
    const uint64_t sector = position / SectorBitmap::kSectorSize;
    if (sector < overlay_->written.sectors()) {
      const uint64_t end_sector =
          std::min(overlay_->written.sectors(), end / SectorBitmap::kSectorSize +
                                                    (end % SectorBitmap::kSectorSize != 0 ? 1 : 0));
      part_end =
          std::min(end, overlay_->written.run_end(sector, end_sector) * SectorBitmap::kSectorSize);
      if (!overlay_->written.test(sector)) io.fd = base_fd_;
    } else {
      io.fd = base_fd_;
    }
    io.op = IoRequest::Op::kRead;
    io.offset = position;
    part.length = part_end - position;
    io.buffers = take_buffers(request, part.length);
  } else {
    io.op = request.io.op;
    io.offset = request.io.offset;
    io.length = request.io.op == IoRequest::Op::kWrite ? 0 : request.length;
    part.length = request.length;
    io.buffers = take_buffers(request, request.length);
  }
  request.issued += part.length;
  ++request.parts_in_flight;
  free_parts_.pop_back();
  inner_->submit(std::move(io));
}

void OverlayIo::issue_waiting() {
  while (!waiting_.empty() && !free_parts_.empty()) {
    const uint32_t index = waiting_.front();
    waiting_.pop_front();
    Request& request = requests_[index];
    if (has_parts_left(request)) issue_part(index);
    if (has_parts_left(request)) {
      waiting_.push_back(index);
    } else {
      request.waiting = false;
    }
  }
}

void OverlayIo::part_done(const IoCompletion& completion,
                          const std::function<void(const IoCompletion&)>& on_complete) {
  const Part part = parts_[completion.cookie];
  free_parts_.push_back(static_cast<uint32_t>(completion.cookie));
  Request& request = requests_[part.request];
  --request.parts_in_flight;
  const int64_t result = completion.result;
  if (result < 0) {
    if (request.error == 0) request.error = result;
  } else if (static_cast<uint64_t>(result) < part.length) {
    request.transferred = std::min(request.transferred, part.start + result);
  }
  if (is_modifying(request.io.op) && result >= 0) {
    // What the overlay now holds, even for a request cancelled meanwhile. A write marks the whole
    // sectors it wrote; a punched or zeroed range succeeded whole (a no-op part has no length).
    const uint64_t bytes = request.io.op == IoRequest::Op::kWrite ? result : part.length;
    overlay_->written.set((request.io.offset + part.start) / SectorBitmap::kSectorSize,
                          bytes / SectorBitmap::kSectorSize);
  }
  if (request.parts_in_flight > 0 || request.waiting) return;
  const bool counts_bytes =
      request.io.op == IoRequest::Op::kRead || request.io.op == IoRequest::Op::kWrite;
  const int64_t request_result =
      request.error != 0 ? request.error
                         : (counts_bytes ? static_cast<int64_t>(request.transferred) : 0);
  const uint64_t cookie = request.io.cookie;
  request.io.buffers.clear();
  free_requests_.push_back(part.request);
  on_complete({cookie, request_result});
}

void OverlayIo::flush_submissions() {
  issue_waiting();
  inner_->flush_submissions();
}

size_t OverlayIo::reap(const std::function<void(const IoCompletion&)>& on_complete) {
  size_t count = 0;
  inner_->reap([&](const IoCompletion& completion) {
    part_done(completion, [&](const IoCompletion& done) {
      ++count;
      on_complete(done);
    });
  });
  // Completed parts made room for the parts still waiting.
  flush_submissions();
  return count;
}

void OverlayIo::cancel_all() {
  // Parts not yet in the engine are given up; a request with nothing in the engine completes
  // through a no-op part.
  for (const uint32_t index : waiting_) {
    if (requests_[index].error == 0) requests_[index].error = -ECANCELED;
  }
  inner_->cancel_all();
  flush_submissions();
}

void OverlayIo::wait_all(const std::function<void(const IoCompletion&)>& on_complete) {
  while (in_flight() > 0) {
    issue_waiting();
    inner_->wait_all([&](const IoCompletion& completion) { part_done(completion, on_complete); });
  }
}

}  // namespace vmm::devices
