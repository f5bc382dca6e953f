#include "devices/legacy/vm_generation_id.hpp"

#include <sys/random.h>

#include <cerrno>

#include "base/util/error.hpp"

namespace vmm::devices {

VmGenerationId::VmGenerationId(const GuestMemory& memory, uint64_t id_address,
                               InterruptLine& notify_line)
    : notify_line_(notify_line), id_(random_generation_id()) {
  memory.write_or_throw(id_address, id_, "VM Generation ID");
}

VmGenerationId::Id random_generation_id() {
  VmGenerationId::Id id{};
  size_t filled = 0;
  while (filled < id.size()) {
    ssize_t got = ::getrandom(id.data() + filled, id.size() - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw_errno("VM Generation ID: getrandom");
    }
    filled += static_cast<size_t>(got);
  }
  return id;
}

}  // namespace vmm::devices
