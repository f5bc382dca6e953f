#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace vmm::devices {

// One request to a disk image backend. Buffers point into guest memory (already bounds-checked
// by the caller) and stay valid until the request completes.
struct IoRequest {
  enum class Op {
    kRead,       // preadv into `buffers` at `offset`
    kWrite,      // pwritev from `buffers` at `offset`
    kFlush,      // fdatasync
    kPunchHole,  // fallocate(PUNCH_HOLE | KEEP_SIZE) over [offset, offset+length)
    kZeroRange,  // fallocate(ZERO_RANGE | KEEP_SIZE) over [offset, offset+length)
    kNop,        // touches nothing and completes with 0: a wrapping engine (OverlayIo) answers a
                 // request through this engine's completions without doing I/O
  };
  Op op = Op::kRead;
  uint64_t offset = 0;
  uint64_t length = 0;  // kPunchHole and kZeroRange only
  std::vector<iovec> buffers;
  uint64_t cookie = 0;  // handed back with the completion
  int fd = -1;          // the file to work on: -1 for the engine's own (create()'s `fd`), or one of
                        // create()'s `other_fds` (io_uring fails any other with -EBADF)
};

// Runs `request` with its blocking system call (preadv, pwritev, fdatasync, fallocate), on
// `request.fd`, or on `engine_fd` when it has none: the thread pool's workers do this. Returns
// what an IoCompletion reports (bytes, 0, or -errno); EINTR is retried.
int64_t execute_blocking(int engine_fd, const IoRequest& request);

struct IoCompletion {
  uint64_t cookie;
  // Bytes transferred for kRead/kWrite (a short transfer is reported as such, not retried), 0 for
  // the others, or -errno.
  int64_t result;
};

// Asynchronous I/O on a file descriptor (or, request by request, on another). Not thread-safe: one
// thread makes every call (the block device's, the event loop). The engine signals completion_fd()
// (an eventfd, readable) when completions are waiting and the caller then drains them with reap().
class AsyncIo {
 public:
  enum class Engine { kAuto, kIoUring, kThreadPool };

  virtual ~AsyncIo() = default;

  // Which engine this is, for logs: "io_uring" or "thread pool".
  virtual std::string name() const = 0;
  // Queues `request`; it may start at once or when flush_submissions() is called. Never blocks on
  // the I/O itself. At most `depth` (create()) requests may be in flight.
  virtual void submit(IoRequest request) = 0;
  // Starts everything submit() queued (one io_uring_submit for a whole batch).
  virtual void flush_submissions() = 0;
  virtual int completion_fd() const = 0;
  // Calls `on_complete` for each finished request, in completion order. Returns how many.
  virtual size_t reap(const std::function<void(const IoCompletion&)>& on_complete) = 0;
  // Requests submitted and not yet reaped.
  virtual size_t in_flight() const = 0;
  // Gives up, as far as the engine can, the requests not yet under way (a device reset): each
  // still completes, with -ECANCELED or with its result if it had started. Never blocks.
  virtual void cancel_all() = 0;
  // Blocks until every in-flight request has finished, calling `on_complete` for each: a device
  // reset must not return while the host still writes into buffers the guest may reuse.
  virtual void wait_all(const std::function<void(const IoCompletion&)>& on_complete) = 0;

  // Called first on each thread the engine starts (the thread pool's workers), e.g. to confine it
  // with a seccomp filter; if it throws, create() fails with its message.
  using ThreadStartHook = std::function<void()>;

  // An engine for `fd` (and `other_fds`, which requests may name) with room for `depth` requests
  // in flight. kAuto tries io_uring and falls back to the thread pool where io_uring is
  // unavailable (old kernel, seccomp, sysctl io_uring_disabled) or cannot be restricted (kernels
  // before 5.10), logging which it chose. The destructor waits for in-flight requests, so their
  // buffers may be unmapped afterwards.
  static std::unique_ptr<AsyncIo> create(int fd, unsigned depth, Engine engine = Engine::kAuto,
                                         ThreadStartHook on_thread_start = {},
                                         std::span<const int> other_fds = {});
};

}  // namespace vmm::devices
