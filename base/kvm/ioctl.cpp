#include "base/kvm/ioctl.hpp"

namespace vmm::kvm {

int check_extension(int fd, long capability) {
  const int ret = ::ioctl(fd, KVM_CHECK_EXTENSION, capability);
  return ret < 0 ? 0 : ret;
}

std::vector<kvm_cpuid_entry2> read_cpuid(int fd, unsigned long request, const char* name) {
  for (uint32_t count = 128; count <= 4096; count *= 2) {
    const std::vector<kvm_cpuid_entry2> room(count);
    auto buffer = flex_buffer(CpuidHeader{count, 0}, std::span<const kvm_cpuid_entry2>(room));
    if (::ioctl(fd, request, buffer.data()) == 0) {
      CpuidHeader header;
      std::memcpy(&header, buffer.data(), sizeof(header));
      return flex_entries<CpuidHeader, kvm_cpuid_entry2>(buffer, header.nent);
    }
    if (errno != E2BIG) throw_errno(name);
  }
  fail("{}: too many entries", name);
}

}  // namespace vmm::kvm
