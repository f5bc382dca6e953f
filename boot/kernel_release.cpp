#include "boot/kernel_release.hpp"

#include <algorithm>
#include <cstring>

#include "boot/bzimage.hpp"
#include "boot/elf.hpp"
#include "boot/setup_header.hpp"

namespace vmm::boot {

namespace {

// kernel_version exists from boot protocol 2.00 on, and points this far short of the string.
constexpr uint16_t kKernelVersionProtocol = 0x0200;
constexpr size_t kKernelVersionBase = 0x200;
// Releases are short ("6.1.0-57-cloud-amd64"); a longer word is not one.
constexpr size_t kMaxReleaseLength = 64;
constexpr std::string_view kElfBanner = "Linux version ";

// The word at the start of `text`, ended by a space, a NUL or the end of `text`.
std::string_view first_word(std::string_view text) {
  return text.substr(0, std::min(text.find(' '), text.find('\0')));
}

std::optional<std::string> plausible(std::string_view word) {
  if (!is_plausible_release(word)) return std::nullopt;
  return std::string(word);
}

std::optional<std::string> bzimage_release(std::span<const uint8_t> image) {
  const size_t header_end = kSetupHeaderOffset + sizeof(SetupHeader);
  if (image.size() < header_end) return std::nullopt;
  SetupHeader header;
  std::memcpy(&header, image.data() + kSetupHeaderOffset, sizeof(header));
  if (header.version < kKernelVersionProtocol || header.kernel_version == 0) return std::nullopt;
  const size_t at = kKernelVersionBase + header.kernel_version;
  if (at >= image.size()) return std::nullopt;
  const std::string_view rest(reinterpret_cast<const char*>(image.data() + at),
                              std::min(image.size() - at, kMaxReleaseLength + 1));
  const std::string_view word = first_word(rest);
  // A word that runs to the end of what we looked at has no end we saw: not a release.
  if (word.size() == rest.size()) return std::nullopt;
  return plausible(word);
}

// The banner is in .rodata; "Linux version " can also appear elsewhere (a format string, a
// message), so the first occurrence followed by a plausible release wins.
std::optional<std::string> elf_release(std::span<const uint8_t> image) {
  const std::string_view bytes(reinterpret_cast<const char*>(image.data()), image.size());
  for (size_t at = bytes.find(kElfBanner); at != std::string_view::npos;
       at = bytes.find(kElfBanner, at + 1)) {
    const std::string_view rest = bytes.substr(at + kElfBanner.size(), kMaxReleaseLength + 1);
    const std::string_view word = first_word(rest);
    if (word.size() < rest.size() && rest[word.size()] == ' ') {
      if (auto release = plausible(word)) return release;
    }
  }
  return std::nullopt;
}

}  // namespace

bool is_plausible_release(std::string_view text) {
  if (text.empty() || text.size() > kMaxReleaseLength) return false;
  if (text.front() < '0' || text.front() > '9') return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c > ' ' && c < 0x7f && c != '/'; });
}

std::optional<std::string> kernel_release(std::span<const uint8_t> image) {
  if (looks_like_bzimage(image)) return bzimage_release(image);
  if (looks_like_elf(image)) return elf_release(image);
  return std::nullopt;
}

}  // namespace vmm::boot
