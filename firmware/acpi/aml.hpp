#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

// A small builder for the AML (ACPI Machine Language) bytes of a DSDT: just the objects a
// hardware-reduced platform needs to describe its devices. Each function returns the complete
// encoding of one term; callers nest them by passing encoded bodies. Invalid input (a bad name,
// an over-long body) throws vmm::Error.
namespace vmm::acpi::aml {

using Bytes = std::vector<uint8_t>;

// Concatenates encoded terms into one TermList.
Bytes concat(std::initializer_list<std::span<const uint8_t>> parts);

// The PkgLength that prefixes a body of `body_length` bytes; the encoded value counts its own
// 1-4 bytes too.
Bytes pkg_length(uint64_t body_length);

// A NameString: "_HID" (one segment, short ones padded with '_'), "\\_SB_" (rooted),
// "\\_SB_.COM1" (dual/multi-segment path), "^PARN" (parent prefix).
Bytes name_string(std::string_view path);

// The shortest encoding of an integer: ZeroOp, OneOp, or Byte/Word/DWord/QWord prefix.
Bytes integer(uint64_t value);
// Always a DWordPrefix encoding (EISA IDs, fields read as 32-bit values).
Bytes dword(uint32_t value);
// A null-terminated ASCII string (no NUL or non-ASCII characters inside).
Bytes string(std::string_view text);

// A compressed EISA ID: "PNP0501" -> 0x0105D041, as iasl's EisaId() produces it.
uint32_t eisa_id(std::string_view id);
// True for a 7-character PNP ID ("PNP0501": three letters, four hex digits) that eisa_id takes.
bool is_eisa_id(std::string_view id);

Bytes package(std::span<const Bytes> elements);
Bytes buffer(std::span<const uint8_t> data);
Bytes name(std::string_view name, std::span<const uint8_t> value);
Bytes scope(std::string_view name, std::span<const uint8_t> body);
Bytes device(std::string_view name, std::span<const uint8_t> body);
// A NotSerialized method; `body` is its TermList (e.g. return_value(integer(0xf))).
Bytes method(std::string_view name, uint8_t arg_count, std::span<const uint8_t> body);
Bytes return_value(std::span<const uint8_t> value);
// If (predicate) { body }, with no Else.
Bytes if_then(std::span<const uint8_t> predicate, std::span<const uint8_t> body);
// LEqual (left, right): an Integer comparison, true as Ones.
Bytes equal(std::span<const uint8_t> left, std::span<const uint8_t> right);
// ArgN, a method's N-th argument (0-6).
Bytes arg(uint8_t index);
// Notify (object, value): queues a notification (0x80 and up: device-specific) for the OS's
// driver of `object`, a path such as "\\_SB_.VGEN".
Bytes notify(std::string_view object, std::span<const uint8_t> value);

// Resource descriptors for a ResourceTemplate.
// I/O port range with 16-bit decode (small descriptor 0x47).
Bytes io_port(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
// Fixed read/write 32-bit memory range (large descriptor 0x86).
Bytes memory32_fixed(uint32_t base, uint32_t length);
enum class Trigger { kLevel, kEdge };
enum class Polarity { kActiveHigh, kActiveLow };
// Extended interrupt (large descriptor 0x89): ResourceConsumer, Exclusive, the given GSIs.
Bytes extended_interrupt(Trigger trigger, Polarity polarity, std::span<const uint32_t> gsis);
// A Buffer holding the descriptors followed by an end tag (checksum 0: "not computed").
Bytes resource_template(std::span<const Bytes> descriptors);

}  // namespace vmm::acpi::aml
