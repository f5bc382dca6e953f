#include "firmware/acpi/aml.hpp"

#include "base/util/error.hpp"

namespace vmm::acpi::aml {
namespace {

// Opcodes and prefixes (ACPI 6.3, section 20.2).
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kStringPrefix = 0x0d;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kMethodOp = 0x14;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kParentPrefixChar = '^';
constexpr uint8_t kArg0Op = 0x68;
constexpr uint8_t kMaxArg = 6;
constexpr uint8_t kNotifyOp = 0x86;
constexpr uint8_t kLEqualOp = 0x93;
constexpr uint8_t kIfOp = 0xa0;
constexpr uint8_t kReturnOp = 0xa4;

// Resource descriptor tags (ACPI 6.3, section 6.4).
constexpr uint8_t kIoPortTag = 0x47;  // small item 0x08, length 7
constexpr uint8_t kEndTag = 0x79;     // small item 0x0f, length 1
constexpr uint8_t kMemory32FixedTag = 0x86;
constexpr uint8_t kExtendedInterruptTag = 0x89;

// PkgLength covers at most 2^28 - 1 bytes.
constexpr uint64_t kMaxPkgLength = (uint64_t{1} << 28) - 1;

void append(Bytes& out, std::span<const uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_le(Bytes& out, uint64_t value, int size) {
  for (int i = 0; i < size; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

bool is_lead_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_name_char(char c) {
  return is_lead_name_char(c) || (c >= '0' && c <= '9');
}
bool is_upper_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

void append_name_seg(Bytes& out, std::string_view seg, std::string_view path) {
  if (seg.empty() || seg.size() > 4) {
    fail("ACPI name \"{}\": segment \"{}\" must be 1-4 characters", path, seg);
  }
  if (!is_lead_name_char(seg[0])) {
    fail("ACPI name \"{}\": segment \"{}\" must start with A-Z or _", path, seg);
  }
  for (char c : seg) {
    if (!is_name_char(c)) {
      fail("ACPI name \"{}\": segment \"{}\" has characters outside A-Z0-9_", path, seg);
    }
  }
  for (size_t i = 0; i < 4; ++i) out.push_back(i < seg.size() ? seg[i] : '_');
}

// Opcode, PkgLength, then the body: the shape of every container object.
Bytes with_pkg_length(std::span<const uint8_t> opcode, std::span<const uint8_t> body) {
  Bytes out(opcode.begin(), opcode.end());
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

}  // namespace

Bytes concat(std::initializer_list<std::span<const uint8_t>> parts) {
  Bytes out;
  for (auto part : parts) append(out, part);
  return out;
}

Bytes pkg_length(uint64_t body_length) {
  // The encoded length includes the PkgLength bytes themselves; a one-byte form holds up to 63,
  // each extra byte adds 8 bits above the lead byte's low nibble.
  constexpr uint64_t kLimits[] = {0x3f, 0xfff, 0xfffff, kMaxPkgLength};
  for (int extra = 0; extra < 4; ++extra) {
    uint64_t total = body_length + extra + 1;
    if (total > kLimits[extra]) continue;
    if (extra == 0) return {static_cast<uint8_t>(total)};
    Bytes out{static_cast<uint8_t>((extra << 6) | (total & 0xf))};
    append_le(out, total >> 4, extra);
    return out;
  }
  fail("AML object of {} bytes exceeds the PkgLength limit", body_length);
}

Bytes name_string(std::string_view path) {
  Bytes out;
  std::string_view rest = path;
  if (!rest.empty() && rest.front() == kRootChar) {
    out.push_back(kRootChar);
    rest.remove_prefix(1);
  } else {
    while (!rest.empty() && rest.front() == kParentPrefixChar) {
      out.push_back(kParentPrefixChar);
      rest.remove_prefix(1);
    }
  }
  if (rest.empty()) {
    if (out.empty()) fail("ACPI name is empty");
    out.push_back(0x00);  // NullName: the root or parent scope itself
    return out;
  }
  std::vector<std::string_view> segs;
  for (size_t start = 0;;) {
    size_t dot = rest.find('.', start);
    segs.push_back(rest.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (segs.size() > 255) fail("ACPI name \"{}\" has too many segments", path);
  if (segs.size() == 2) {
    out.push_back(kDualNamePrefix);
  } else if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (auto seg : segs) append_name_seg(out, seg, path);
  return out;
}

Bytes integer(uint64_t value) {
  if (value == 0) return {kZeroOp};
  if (value == 1) return {kOneOp};
  Bytes out;
  if (value <= 0xff) {
    out.push_back(kBytePrefix);
    append_le(out, value, 1);
  } else if (value <= 0xffff) {
    out.push_back(kWordPrefix);
    append_le(out, value, 2);
  } else if (value <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    append_le(out, value, 4);
  } else {
    out.push_back(kQWordPrefix);
    append_le(out, value, 8);
  }
  return out;
}

Bytes dword(uint32_t value) {
  Bytes out{kDWordPrefix};
  append_le(out, value, 4);
  return out;
}

Bytes string(std::string_view text) {
  Bytes out{kStringPrefix};
  for (char c : text) {
    auto byte = static_cast<uint8_t>(c);
    if (byte == 0 || byte > 0x7f) fail("AML string \"{}\" must be ASCII without NUL", text);
    out.push_back(byte);
  }
  out.push_back(0);
  return out;
}

bool is_eisa_id(std::string_view id) {
  if (id.size() != 7) return false;
  for (size_t i = 0; i < 3; ++i) {
    if (id[i] < 'A' || id[i] > 'Z') return false;
  }
  for (size_t i = 3; i < 7; ++i) {
    if (!is_upper_hex(id[i])) return false;
  }
  return true;
}

uint32_t eisa_id(std::string_view id) {
  if (!is_eisa_id(id)) fail("EISA ID \"{}\" must be three letters and four hex digits", id);
  // Three 5-bit letters ('A' = 1) and four nibbles, stored big-endian in the 32-bit value.
  uint32_t value = 0;
  for (size_t i = 0; i < 3; ++i) value = (value << 5) | static_cast<uint32_t>(id[i] - 0x40);
  for (size_t i = 3; i < 7; ++i) {
    char c = id[i];
    value = (value << 4) | static_cast<uint32_t>(c <= '9' ? c - '0' : c - 'A' + 10);
  }
  return __builtin_bswap32(value);
}

Bytes package(std::span<const Bytes> elements) {
  if (elements.size() > 255) fail("AML package of {} elements exceeds 255", elements.size());
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const auto& element : elements) append(body, element);
  const uint8_t opcode[] = {kPackageOp};
  return with_pkg_length(opcode, body);
}

Bytes buffer(std::span<const uint8_t> data) {
  Bytes body = integer(data.size());
  append(body, data);
  const uint8_t opcode[] = {kBufferOp};
  return with_pkg_length(opcode, body);
}

Bytes name(std::string_view name, std::span<const uint8_t> value) {
  Bytes out{kNameOp};
  append(out, name_string(name));
  append(out, value);
  return out;
}

Bytes scope(std::string_view name, std::span<const uint8_t> body) {
  const uint8_t opcode[] = {kScopeOp};
  return with_pkg_length(opcode, concat({name_string(name), body}));
}

Bytes device(std::string_view name, std::span<const uint8_t> body) {
  const uint8_t opcode[] = {kExtOpPrefix, kDeviceOp};
  return with_pkg_length(opcode, concat({name_string(name), body}));
}

Bytes method(std::string_view name, uint8_t arg_count, std::span<const uint8_t> body) {
  if (arg_count > 7) fail("AML method {}: {} arguments exceed 7", name, arg_count);
  // MethodFlags: ArgCount in bits 0-2; SerializeFlag and SyncLevel stay 0.
  const uint8_t flags[] = {arg_count};
  const uint8_t opcode[] = {kMethodOp};
  return with_pkg_length(opcode, concat({name_string(name), flags, body}));
}

Bytes return_value(std::span<const uint8_t> value) {
  const uint8_t opcode[] = {kReturnOp};
  return concat({opcode, value});
}

Bytes if_then(std::span<const uint8_t> predicate, std::span<const uint8_t> body) {
  const uint8_t opcode[] = {kIfOp};
  return with_pkg_length(opcode, concat({predicate, body}));
}

Bytes equal(std::span<const uint8_t> left, std::span<const uint8_t> right) {
  const uint8_t opcode[] = {kLEqualOp};
  return concat({opcode, left, right});
}

Bytes arg(uint8_t index) {
  if (index > kMaxArg) fail("AML Arg{} does not exist (Arg0-Arg{})", index, kMaxArg);
  return {static_cast<uint8_t>(kArg0Op + index)};
}

Bytes notify(std::string_view object, std::span<const uint8_t> value) {
  const uint8_t opcode[] = {kNotifyOp};
  return concat({opcode, name_string(object), value});
}

Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length) {
  constexpr uint8_t kDecode16 = 0x01;
  Bytes out{kIoPortTag, kDecode16};
  append_le(out, min, 2);
  append_le(out, max, 2);
  out.push_back(alignment);
  out.push_back(length);
  return out;
}

Bytes memory32_fixed(uint32_t base, uint32_t length) {
  constexpr uint8_t kReadWrite = 0x01;
  Bytes out{kMemory32FixedTag, 9, 0, kReadWrite};
  append_le(out, base, 4);
  append_le(out, length, 4);
  return out;
}

Bytes extended_interrupt(Trigger trigger, Polarity polarity, std::span<const uint32_t> gsis) {
  if (gsis.empty() || gsis.size() > 255) {
    fail("AML interrupt descriptor needs 1-255 interrupts, not {}", gsis.size());
  }
  // Flags: bit 0 consumer, bit 1 edge-triggered, bit 2 active-low, bit 3 (shared) left 0.
  uint8_t flags = 0x01;
  if (trigger == Trigger::kEdge) flags |= 0x02;
  if (polarity == Polarity::kActiveLow) flags |= 0x04;
  Bytes out{kExtendedInterruptTag};
  append_le(out, 2 + 4 * gsis.size(), 2);
  out.push_back(flags);
  out.push_back(static_cast<uint8_t>(gsis.size()));
  for (uint32_t gsi : gsis) append_le(out, gsi, 4);
  return out;
}

Bytes resource_template(std::span<const Bytes> descriptors) {
  Bytes data;
  for (const auto& descriptor : descriptors) append(data, descriptor);
  data.push_back(kEndTag);
  data.push_back(0);  // checksum 0: the OS treats the template as valid without summing it
  return buffer(data);
}

}  // namespace vmm::acpi::aml
