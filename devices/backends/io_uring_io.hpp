#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/util/event_fd.hpp"
#include "devices/backends/async_io.hpp"

struct io_uring;

namespace vmm::devices {

// AsyncIo over one io_uring: submit() fills submission queue entries, flush_submissions() hands
// the batch to the kernel with one system call, and the kernel signals the registered eventfd for
// each completion.
class IoUringIo final : public AsyncIo {
 public:
  // Throws vmm::Error when the kernel refuses io_uring ("io_uring: Operation not permitted").
  IoUringIo(int fd, unsigned depth);
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

 private:
  // What the kernel may still read while a request runs: the iovec array must outlive it. Indexed
  // by the submission's user_data.
  struct Slot {
    uint64_t cookie = 0;
    std::vector<iovec> buffers;
  };

  // Hands one completion queue entry to `on_complete` and frees its slot.
  void complete(uint64_t user_data, int32_t result,
                const std::function<void(const IoCompletion&)>& on_complete);

  int fd_;
  std::unique_ptr<io_uring> ring_;
  EventFd completions_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  size_t in_flight_ = 0;
};

}  // namespace vmm::devices
