#include "devices/virtio/descriptor_chain.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace vmm::devices::virtio {

namespace {

// Walks the buffers of one direction, skipping `offset` bytes, and hands each piece to `copy`
// (guest address, position in the host span, length). Stops early if `copy` fails.
template <typename Copy>
size_t for_each_piece(std::span<const Buffer> buffers, bool writable, uint64_t offset,
                      size_t wanted, Copy copy) {
  size_t done = 0;
  for (const Buffer& buffer : buffers) {
    if (done == wanted) break;
    if (buffer.writable != writable) continue;
    if (offset >= buffer.len) {
      offset -= buffer.len;
      continue;
    }
    const size_t length =
        static_cast<size_t>(std::min<uint64_t>(buffer.len - offset, wanted - done));
    if (!copy(buffer.addr + offset, done, length)) break;
    done += length;
    offset = 0;
  }
  return done;
}

}  // namespace

DescriptorChain::DescriptorChain(const GuestMemory& memory, const SplitQueue* queue,
                                 uint64_t generation, uint16_t head, std::vector<Buffer> buffers)
    : memory_(&memory),
      queue_(queue),
      generation_(generation),
      head_(head),
      buffers_(std::move(buffers)) {
  // pop() has checked that the sum fits in u32.
  for (const Buffer& buffer : buffers_) {
    (buffer.writable ? writable_bytes_ : readable_bytes_) += buffer.len;
  }
}

DescriptorChain::DescriptorChain(DescriptorChain&& other) noexcept
    : memory_(other.memory_),
      queue_(other.queue_),
      generation_(other.generation_),
      head_(other.head_),
      buffers_(std::move(other.buffers_)),
      readable_bytes_(other.readable_bytes_),
      writable_bytes_(other.writable_bytes_),
      pending_(std::exchange(other.pending_, false)) {}

DescriptorChain& DescriptorChain::operator=(DescriptorChain&& other) noexcept {
  if (this != &other) {
    report_if_pending();
    memory_ = other.memory_;
    queue_ = other.queue_;
    generation_ = other.generation_;
    head_ = other.head_;
    buffers_ = std::move(other.buffers_);
    readable_bytes_ = other.readable_bytes_;
    writable_bytes_ = other.writable_bytes_;
    pending_ = std::exchange(other.pending_, false);
  }
  return *this;
}

DescriptorChain::~DescriptorChain() {
  report_if_pending();
}

void DescriptorChain::report_if_pending() const {
  if (pending_) {
    spdlog::error("virtio: descriptor chain {} dropped without being returned to the driver",
                  head_);
  }
}

size_t DescriptorChain::read(uint64_t offset, std::span<uint8_t> out) const {
  return for_each_piece(buffers_, false, offset, out.size(),
                        [&](uint64_t gpa, size_t at, size_t length) {
                          return memory_->read(gpa, out.subspan(at, length));
                        });
}

size_t DescriptorChain::write(uint64_t offset, std::span<const uint8_t> in) const {
  return for_each_piece(buffers_, true, offset, in.size(),
                        [&](uint64_t gpa, size_t at, size_t length) {
                          return memory_->write(gpa, in.subspan(at, length));
                        });
}

}  // namespace vmm::devices::virtio
