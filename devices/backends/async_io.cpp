#include "devices/backends/async_io.hpp"

#include <spdlog/spdlog.h>

#include "base/util/error.hpp"
#include "devices/backends/io_uring_io.hpp"
#include "devices/backends/thread_pool_io.hpp"

namespace vmm::devices {

std::unique_ptr<AsyncIo> AsyncIo::create(int fd, unsigned depth, Engine engine,
                                         ThreadStartHook on_thread_start,
                                         std::span<const int> other_fds) {
  if (depth == 0) fail("disk I/O: queue depth must be at least 1");
  std::unique_ptr<AsyncIo> io;
  switch (engine) {
    case Engine::kIoUring: io = std::make_unique<IoUringIo>(fd, depth, other_fds); break;
    case Engine::kThreadPool:
      io = std::make_unique<ThreadPoolIo>(fd, depth, std::move(on_thread_start));
      break;
    case Engine::kAuto: try { io = std::make_unique<IoUringIo>(fd, depth, other_fds);
      } catch (const Error& e) {
        // Old kernels (ENOSYS; EINVAL for the restrictions before 5.10), seccomp or
        // kernel.io_uring_disabled (EPERM): slower, still works.
        spdlog::info("{}; disk I/O uses a thread pool instead", e.what());
        io = std::make_unique<ThreadPoolIo>(fd, depth, std::move(on_thread_start));
      }
      break;
  }
  spdlog::debug("disk I/O engine: {} (fd {}, depth {})", io->name(), fd, depth);
  return io;
}

}  // namespace vmm::devices
