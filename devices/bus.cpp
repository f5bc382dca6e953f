#include "devices/bus.hpp"

#include <algorithm>

#include "base/util/error.hpp"

namespace vmm::devices {

void Bus::insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device) {
  if (length == 0 || base + length < base) {
    fail("{} bus: invalid range {:#x}+{:#x}", name_, base, length);
  }
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + length) {
    fail("{} bus: range {:#x}+{:#x} overlaps {:#x}+{:#x}", name_, base, length, next->first,
         next->second.length);
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.length > base) {
      fail("{} bus: range {:#x}+{:#x} overlaps {:#x}+{:#x}", name_, base, length, prev->first,
           prev->second.length);
    }
  }
  ranges_.emplace(base, Range{length, std::move(device)});
}

BusDevice* Bus::find(uint64_t address, uint64_t size, uint64_t& offset) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  offset = address - it->first;
  if (offset >= it->second.length || size > it->second.length - offset) return nullptr;
  return it->second.device.get();
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) const {
  uint64_t offset = 0;
  BusDevice* device = find(address, data.size(), offset);
  if (!device) {
    std::fill(data.begin(), data.end(), 0xff);
    return false;
  }
  device->read(offset, data);
  return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) const {
  uint64_t offset = 0;
  BusDevice* device = find(address, data.size(), offset);
  if (!device) return false;
  device->write(offset, data);
  return true;
}

}  // namespace vmm::devices
