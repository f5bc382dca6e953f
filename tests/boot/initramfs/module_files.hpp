#pragma once

// Synthetic kernel modules trees for the initramfs tests: files written under a temporary folder,
// fake modules (an ELF magic and a vermagic), and the same compressed as Kbuild does (xz, zstd).

#include <gtest/gtest.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::boot::testing {

inline std::vector<uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

// Writes `path` (and the folders above it).
inline void write_file(const std::string& path, std::span<const uint8_t> bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "writing " << path;
}

inline void write_file(const std::string& path, std::string_view text) {
  write_file(path, bytes_of(text));
}

// What passes for a module: the ELF magic, a modinfo vermagic for `release`, and its name.
inline std::vector<uint8_t> fake_module(std::string_view name, std::string_view release) {
  std::string text =
      "\x7f"
      "ELF";
  text += std::string(60, '\0') + "name=" + std::string(name) + '\0' +
          "vermagic=" + std::string(release) + " SMP mod_unload modversions " + '\0';
  return bytes_of(text);
}

inline std::vector<uint8_t> xz_compressed(std::span<const uint8_t> data) {
  std::vector<uint8_t> out(lzma_stream_buffer_bound(data.size()));
  size_t size = 0;
  EXPECT_EQ(lzma_easy_buffer_encode(0, LZMA_CHECK_CRC32, nullptr, data.data(), data.size(),
                                    out.data(), &size, out.size()),
            LZMA_OK);
  out.resize(size);
  return out;
}

// gzip's format (zlib's deflate with the gzip wrapper), as gzip -c writes it.
inline std::vector<uint8_t> gzip_compressed(std::span<const uint8_t> data) {
  z_stream stream{};
  EXPECT_EQ(deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::vector<uint8_t> out(deflateBound(&stream, data.size()));
  stream.next_in = const_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&stream, Z_FINISH), Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

inline std::vector<uint8_t> zstd_compressed(std::span<const uint8_t> data) {
  std::vector<uint8_t> out(ZSTD_compressBound(data.size()));
  const size_t size = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 1);
  EXPECT_FALSE(ZSTD_isError(size)) << ZSTD_getErrorName(size);
  out.resize(size);
  return out;
}

}  // namespace vmm::boot::testing
