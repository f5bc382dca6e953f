#include "firmware/reset_vector.hpp"

#include <array>

#include "base/memory/layout.hpp"

namespace vmm::firmware {

void write_reset_vector(const GuestMemory& memory, uint16_t reset_port, uint8_t reset_value) {
  const auto port_low = static_cast<uint8_t>(reset_port);
  const auto port_high = static_cast<uint8_t>(reset_port >> 8);
  // clang-format off
  const std::array<uint8_t, 10> code = {
      0xb0, reset_value,           // mov al, reset_value
      0xba, port_low, port_high,   // mov dx, reset_port
      0xee,                        // out dx, al
      0xfa,                        // cli
      0xf4,                        // hlt
      0xeb, 0xfd,                  // jmp back to hlt
  };
  // clang-format on
  static_assert(layout::kResetVector + 16 == layout::kBiosAreaEnd);
  memory.write_or_throw(layout::kResetVector, code, "the reset vector");
}

}  // namespace vmm::firmware
