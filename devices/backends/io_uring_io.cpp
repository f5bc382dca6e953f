#include "devices/backends/io_uring_io.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/util/error.hpp"

namespace vmm::devices {

namespace {

// The user_data of a cancel request, whose own completion is not a request's.
constexpr uint64_t kCancelTag = ~uint64_t{0};

}  // namespace

IoUringIo::IoUringIo(int fd, unsigned depth, std::span<const int> other_fds)
    : ring_(std::make_unique<io_uring>()), slots_(depth) {
  files_.push_back(fd);
  files_.insert(files_.end(), other_fds.begin(), other_fds.end());
  // The completion queue gets twice `depth` entries, so with at most `depth` requests in flight
  // it cannot overflow. Disabled until restricted: nothing runs on it unrestricted.
  const int ret = io_uring_queue_init(depth, ring_.get(), IORING_SETUP_R_DISABLED);
  if (ret < 0) throw Error(errno_message("io_uring", -ret));
  try {
    restrict_and_enable();
  } catch (const Error&) {
    io_uring_queue_exit(ring_.get());
    throw;
  }
  free_slots_.reserve(depth);
  for (uint32_t index = depth; index > 0; --index) free_slots_.push_back(index - 1);
}

void IoUringIo::restrict_and_enable() {
  int ret = io_uring_register_eventfd(ring_.get(), completions_.fd());
  if (ret < 0) throw Error(errno_message("io_uring: registering the completion eventfd", -ret));
  ret = io_uring_register_files(ring_.get(), files_.data(), static_cast<unsigned>(files_.size()));
  if (ret < 0) throw Error(errno_message("io_uring: registering the disk's files", -ret));

  // Exactly what submit() and cancel_all() send, each entry on a registered file; no
  // IORING_RESTRICTION_REGISTER_OP entry, so every io_uring_register call is refused from now on.
  std::vector<io_uring_restriction> restrictions;
  for (const int op : {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE,
                       IORING_OP_NOP, IORING_OP_ASYNC_CANCEL}) {
    io_uring_restriction restriction{};
    restriction.opcode = IORING_RESTRICTION_SQE_OP;
    restriction.sqe_op = static_cast<uint8_t>(op);
    restrictions.push_back(restriction);
  }
  io_uring_restriction fixed_files{};
  fixed_files.opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
  fixed_files.sqe_flags = IOSQE_FIXED_FILE;
  restrictions.push_back(fixed_files);
  // Through io_uring_register itself: liburing 2.3's shared library does not export
  // io_uring_register_restrictions or io_uring_enable_rings (its symbol map leaves them out).
  const unsigned ring_fd = static_cast<unsigned>(ring_->ring_fd);
  ret = io_uring_register(ring_fd, IORING_REGISTER_RESTRICTIONS, restrictions.data(),
                          static_cast<unsigned>(restrictions.size()));
  if (ret < 0) throw Error(errno_message("io_uring: restricting the ring", -ret));
  ret = io_uring_register(ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0);
  if (ret < 0) throw Error(errno_message("io_uring: enabling the restricted ring", -ret));
}

unsigned IoUringIo::fixed_index(int fd) const {
  if (fd < 0) return 0;
  return static_cast<unsigned>(std::find(files_.begin(), files_.end(), fd) - files_.begin());
}

IoUringIo::~IoUringIo() {
  try {
    wait_all([](const IoCompletion&) {});
  } catch (const Error& e) {
    spdlog::error("{}", e.what());
  }
  io_uring_queue_exit(ring_.get());
}

void IoUringIo::submit(IoRequest request) {
  if (free_slots_.empty()) fail("io_uring: more than {} requests in flight", slots_.size());
  // Cannot fail: unsubmitted entries are a subset of the (at most `depth`) requests in flight and
  // the submission queue has at least `depth` entries.
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) fail("io_uring: submission queue full");

  const uint32_t index = free_slots_.back();
  Slot& slot = slots_[index];
  slot.cookie = request.cookie;
  slot.buffers = std::move(request.buffers);
  const auto fd = static_cast<int>(fixed_index(request.fd));
  const auto vecs = static_cast<unsigned>(slot.buffers.size());
  const auto offset = static_cast<off_t>(request.offset);
  const auto length = static_cast<off_t>(request.length);
  switch (request.op) {
    case IoRequest::Op::kRead:
      io_uring_prep_readv(sqe, fd, slot.buffers.data(), vecs, request.offset);
      break;
    case IoRequest::Op::kWrite:
      io_uring_prep_writev(sqe, fd, slot.buffers.data(), vecs, request.offset);
      break;
    case IoRequest::Op::kFlush: io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC); break;
    case IoRequest::Op::kPunchHole:
      io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
      break;
    case IoRequest::Op::kZeroRange:
      io_uring_prep_fallocate(sqe, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
      break;
    case IoRequest::Op::kNop: io_uring_prep_nop(sqe); break;
  }
  io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
  io_uring_sqe_set_data64(sqe, index);
  free_slots_.pop_back();
  ++in_flight_;
}

void IoUringIo::flush_submissions() {
  // Without IORING_SETUP_SUBMIT_ALL the kernel stops a batch at an entry it rejects (posting that
  // entry's error as its completion), so submit until nothing is left.
  while (io_uring_sq_ready(ring_.get()) > 0) {
    const int ret = io_uring_submit(ring_.get());
    if (ret == -EINTR) continue;
    if (ret <= 0) {
      // EAGAIN/EBUSY: out of kernel resources for now; the entries stay queued for the next flush.
      if (ret < 0) spdlog::warn("io_uring: submitting: {}", std::strerror(-ret));
      return;
    }
  }
}

void IoUringIo::cancel_all() {
  if (in_flight_ == 0) return;
  // The cancel needs a submission entry: make room by submitting what is queued.
  flush_submissions();
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  if (sqe == nullptr) return;  // best effort: the requests then just run to completion
  // Every request in the ring, whatever its fd. Kernels before 5.19 refuse it (EINVAL), which
  // changes nothing else.
  io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
  io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);  // the restrictions require it of every entry
  io_uring_sqe_set_data64(sqe, kCancelTag);
  flush_submissions();
}

void IoUringIo::complete(uint64_t user_data, int32_t result,
                         const std::function<void(const IoCompletion&)>& on_complete) {
  Slot& slot = slots_[user_data];
  const IoCompletion completion{slot.cookie, result};
  slot.buffers.clear();
  free_slots_.push_back(static_cast<uint32_t>(user_data));
  --in_flight_;
  on_complete(completion);
}

size_t IoUringIo::reap(const std::function<void(const IoCompletion&)>& on_complete) {
  // Reset the eventfd before looking, so a completion posted after the last peek signals again.
  completions_.consume();
  size_t count = 0;
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(ring_.get(), &cqe) == 0) {
    const uint64_t user_data = io_uring_cqe_get_data64(cqe);
    const int32_t result = cqe->res;
    io_uring_cqe_seen(ring_.get(), cqe);
    if (user_data == kCancelTag) continue;
    complete(user_data, result, on_complete);
    ++count;
  }
  return count;
}

void IoUringIo::wait_all(const std::function<void(const IoCompletion&)>& on_complete) {
  while (in_flight_ > 0) {
    // Entries still in the submission queue would never complete: io_uring_wait_cqe does not
    // submit.
    flush_submissions();
    io_uring_cqe* cqe = nullptr;
    const int ret = io_uring_wait_cqe(ring_.get(), &cqe);
    if (ret == -EINTR) continue;
    if (ret < 0) throw Error(errno_message("io_uring: waiting for completions", -ret));
    reap(on_complete);
  }
}

}  // namespace vmm::devices
