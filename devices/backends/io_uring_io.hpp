#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/util/event_fd.hpp"
#include "devices/backends/async_io.hpp"

struct io_uring;

namespace vmm::devices {

// AsyncIo over one io_uring: submit() fills submission queue entries, flush_submissions() hands
// the batch to the kernel with one system call, and the kernel signals the registered eventfd for
// each completion.
//
// The ring is restricted before it is enabled: it runs only the operations the engine submits
// (readv, writev, fsync, fallocate, nop, cancel), only on the files registered at construction
// (every entry must carry IOSQE_FIXED_FILE), and takes no io_uring_register call afterwards. So
// code that takes over vmm cannot use the ring to open files or sockets, or to reach any file
// but the engine's. A request naming a file it was not given fails with -EBADF.
class IoUringIo final : public AsyncIo {
 public:
  // `fd` and `other_fds` are the files requests may work on (AsyncIo::create). Throws vmm::Error
  // when the kernel refuses io_uring ("io_uring: Operation not permitted") or its restrictions
  // (kernels before 5.10): the engine never runs unrestricted.
  IoUringIo(int fd, unsigned depth, std::span<const int> other_fds = {});
  ~IoUringIo() override;
  IoUringIo(const IoUringIo&) = delete;
  IoUringIo& operator=(const IoUringIo&) = delete;

  std::string name() const override { return "io_uring"; }
  void submit(IoRequest request) override;
  void flush_submissions() override;
  int completion_fd() const override { return completions_.fd(); }
  size_t reap(const std::function<void(const IoCompletion&)>& on_complete) override;
  size_t in_flight() const override { return in_flight_; }
  void cancel_all() override;
  void wait_all(const std::function<void(const IoCompletion&)>& on_complete) override;

  // The ring itself, for tests that prove the kernel refuses what the restrictions forbid.
  io_uring& ring_for_tests() { return *ring_; }

 private:
  // What the kernel may still read while a request runs: the iovec array must outlive it. Indexed
  // by the submission's user_data.
  struct Slot {
    uint64_t cookie = 0;
    std::vector<iovec> buffers;
  };

  // Registers the files and the eventfd, restricts the ring and enables it.
  void restrict_and_enable();
  // The index of `fd` in the registered files (-1: the engine's own); files_.size(), which the
  // kernel fails with -EBADF, for a file the engine was not given.
  unsigned fixed_index(int fd) const;
  // Hands one completion queue entry to `on_complete` and frees its slot.
  void complete(uint64_t user_data, int32_t result,
                const std::function<void(const IoCompletion&)>& on_complete);

  std::vector<int> files_;  // the registered files: the engine's own, then the others
  std::unique_ptr<io_uring> ring_;
  EventFd completions_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  size_t in_flight_ = 0;
};

}  // namespace vmm::devices
