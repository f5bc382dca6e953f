#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace vmm {

// The saved state of one device, vCPU or VM: a flat byte stream, little-endian like the x86 host,
// written field by field by the thing that owns the state and read back in the same order. The
// layout is versioned by the snapshot as a whole (its manifest), not per field.
class StateWriter {
 public:
  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    // resize and memcpy, not insert: GCC 12 at -O3 takes the inlined insert of a few bytes for an
    // overflow (a false -Wstringop-overflow).
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &value, sizeof(T));
  }
  void put_bool(bool value) { put<uint8_t>(value ? 1 : 0); }
  // A length (u32) and the bytes.
  void put_bytes(std::span<const uint8_t> bytes);
  void put_string(std::string_view text);
  // A count (u32) and the elements.
  template <typename T>
  void put_vector(const std::vector<T>& values) {
    static_assert(std::is_trivially_copyable_v<T>);
    put_bytes({reinterpret_cast<const uint8_t*>(values.data()), values.size() * sizeof(T)});
  }

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

// Reads what a StateWriter wrote. The bytes come from a file and are untrusted: every read is
// bounds-checked, every count is limited by the caller, and a short or malformed stream throws
// vmm::Error ("<what>: ..."), never reads past the end.
class StateReader {
 public:
  // `what` names the state in errors ("vCPU 0", "virtio-blk vda").
  StateReader(std::span<const uint8_t> bytes, std::string what)
      : bytes_(bytes), what_(std::move(what)) {}

  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    static_assert(
        !std::is_same_v<T, bool> && !std::is_enum_v<T>,
        "read bools with get_bool() and enums as integers: a stored byte may be anything");
    T value;
    std::memcpy(&value, take(sizeof(T)).data(), sizeof(T));
    return value;
  }
  bool get_bool();
  // At most `max_size` bytes, else corrupt.
  std::vector<uint8_t> get_bytes(size_t max_size);
  std::string get_string(size_t max_size);
  template <typename T>
  std::vector<T> get_vector(size_t max_count) {
    static_assert(std::is_trivially_copyable_v<T> && !std::is_same_v<T, bool>);
    const std::span<const uint8_t> raw = take_sized(max_count * sizeof(T));
    if (raw.size() % sizeof(T) != 0) corrupt("a list's size is not a whole number of entries");
    std::vector<T> values(raw.size() / sizeof(T));
    if (!raw.empty()) std::memcpy(values.data(), raw.data(), raw.size());
    return values;
  }
  // A value that must be at most `max` (an index, a count, an enum).
  template <typename T>
  T get_at_most(T max, std::string_view field) {
    const T value = get<T>();
    if (value > max) corrupt(std::string(field) + " is out of range");
    return value;
  }

  // Throws unless every byte was read.
  void expect_end() const;
  size_t remaining() const { return bytes_.size() - offset_; }
  const std::string& what() const { return what_; }
  // Throws vmm::Error("<what>: corrupt state: <reason>").
  [[noreturn]] void corrupt(std::string_view reason) const;

 private:
  std::span<const uint8_t> take(size_t size);
  // A u32 length, checked against `max_size`, and that many bytes.
  std::span<const uint8_t> take_sized(size_t max_size);

  std::span<const uint8_t> bytes_;
  size_t offset_ = 0;
  std::string what_;
};

}  // namespace vmm
