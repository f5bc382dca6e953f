#include "base/util/state_stream.hpp"

#include <limits>

#include "base/util/error.hpp"

namespace vmm {

void StateWriter::put_bytes(std::span<const uint8_t> bytes) {
  if (bytes.size() > std::numeric_limits<uint32_t>::max()) {
    fail("state field of {} bytes is too large to save", bytes.size());
  }
  put<uint32_t>(static_cast<uint32_t>(bytes.size()));
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

void StateWriter::put_string(std::string_view text) {
  put_bytes({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

bool StateReader::get_bool() {
  const auto value = get<uint8_t>();
  if (value > 1) corrupt("a flag is neither 0 nor 1");
  return value == 1;
}

std::vector<uint8_t> StateReader::get_bytes(size_t max_size) {
  const std::span<const uint8_t> raw = take_sized(max_size);
  return {raw.begin(), raw.end()};
}

std::string StateReader::get_string(size_t max_size) {
  const std::span<const uint8_t> raw = take_sized(max_size);
  return {raw.begin(), raw.end()};
}

void StateReader::expect_end() const {
  if (remaining() != 0) corrupt(fmt::format("{} unexpected bytes at the end", remaining()));
}

void StateReader::corrupt(std::string_view reason) const {
  fail("{}: corrupt state: {}", what_, reason);
}

std::span<const uint8_t> StateReader::take(size_t size) {
  if (size > remaining()) {
    corrupt(fmt::format("truncated ({} bytes wanted at offset {}, {} left)", size, offset_,
                        remaining()));
  }
  const std::span<const uint8_t> out = bytes_.subspan(offset_, size);
  offset_ += size;
  return out;
}

std::span<const uint8_t> StateReader::take_sized(size_t max_size) {
  const auto size = get<uint32_t>();
  if (size > max_size)
    corrupt(fmt::format("a field of {} bytes exceeds its limit of {}", size, max_size));
  return take(size);
}

}  // namespace vmm
