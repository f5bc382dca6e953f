#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

namespace vmm::devices {

// A device reachable through port I/O or MMIO. `offset` is relative to the start of the range the
// device was inserted at. Called from vCPU threads, possibly concurrently: a device guards its own
// state. Handlers never block on I/O.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// Maps address ranges (one Bus for PIO, one for MMIO) to devices. Filled during machine assembly,
// read-only afterwards, so lookups need no lock.
class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}

  // Throws vmm::Error if [base, base+length) is empty, wraps, or overlaps a range already taken.
  void insert(uint64_t base, uint64_t length, std::shared_ptr<BusDevice> device);

  // Dispatch an access. Returns false (and leaves `data` as all-ones on read) when no device
  // covers the whole access.
  bool read(uint64_t address, std::span<uint8_t> data) const;
  bool write(uint64_t address, std::span<const uint8_t> data) const;

 private:
  struct Range {
    uint64_t length;
    std::shared_ptr<BusDevice> device;
  };
  // Finds the device covering [address, address+size); sets `offset`.
  BusDevice* find(uint64_t address, uint64_t size, uint64_t& offset) const;

  std::string name_;
  std::map<uint64_t, Range> ranges_;  // keyed by base
};

}  // namespace vmm::devices
