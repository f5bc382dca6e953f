#include "boot/initramfs/cpio.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>

#include "base/util/error.hpp"
#include "tests/boot/initramfs/cpio_reader.hpp"
#include "tests/boot/test_images.hpp"
#include "tests/devices/temp_dir.hpp"

namespace vmm::boot {
namespace {

using devices::testing::TempDir;
using test_images::error_of;
using ::testing::HasSubstr;
using testing::read_cpio;

std::vector<uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

// Every kind of entry, and files whose sizes need 0 to 3 bytes of padding.
void add_sample_entries(CpioWriter& cpio) {
  static const std::vector<uint8_t> program = bytes_of(
      "\x7f"
      "ELF and the rest");
  static const std::vector<uint8_t> one = bytes_of("1");
  static const std::vector<uint8_t> four = bytes_of("four");
  static const std::vector<uint8_t> seven = bytes_of("seven!!");
  cpio.add_file("init", 0755, program);
  cpio.add_directory("dev", 0755);
  cpio.add_char_device("dev/console", 0600, 5, 1);
  cpio.add_directory("a", 0700);
  cpio.add_file("a/one", 0644, one);
  cpio.add_file("a/four", 0600, four);
  cpio.add_file("a/seven", 0644, seven);
  cpio.add_file("a/empty", 0644, {});
}

std::vector<uint8_t> sample_archive() {
  CpioWriter cpio;
  add_sample_entries(cpio);
  return cpio.archive();
}

// Runs a shell command; its standard output, or nullopt when it fails.
std::optional<std::string> run(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  return ::pclose(pipe) == 0 ? std::optional(out) : std::nullopt;
}

TEST(CpioWriterTest, EntriesReadBackWithTheirTypesModesAndData) {
  const std::vector<uint8_t> archive = sample_archive();
  EXPECT_EQ(archive.size() % 4, 0u);
  const auto parsed = read_cpio(archive);
  ASSERT_TRUE(parsed.has_trailer);
  std::vector<std::string> names;
  for (const auto& entry : parsed.entries) names.push_back(entry.name);
  EXPECT_THAT(names, ::testing::ElementsAre("init", "dev", "dev/console", "a", "a/one", "a/four",
                                            "a/seven", "a/empty"));

  const auto* init = parsed.find("init");
  EXPECT_EQ(init->mode, S_IFREG | 0755u);
  EXPECT_EQ(init->text(),
            "\x7f"
            "ELF and the rest");
  EXPECT_EQ(init->nlink, 1u);
  const auto* dev = parsed.find("dev");
  EXPECT_EQ(dev->mode, S_IFDIR | 0755u);
  EXPECT_EQ(dev->nlink, 2u);
  EXPECT_TRUE(dev->data.empty());
  const auto* console = parsed.find("dev/console");
  EXPECT_EQ(console->mode, S_IFCHR | 0600u);
  EXPECT_EQ(console->rdev_major, 5u);
  EXPECT_EQ(console->rdev_minor, 1u);
  EXPECT_EQ(parsed.find("a")->mode, S_IFDIR | 0700u);
  EXPECT_EQ(parsed.find("a/one")->text(), "1");
  EXPECT_EQ(parsed.find("a/four")->text(), "four");
  EXPECT_EQ(parsed.find("a/four")->mode, S_IFREG | 0600u);
  EXPECT_EQ(parsed.find("a/seven")->text(), "seven!!");
  EXPECT_TRUE(parsed.find("a/empty")->data.empty());

  std::set<uint32_t> inodes;
  for (const auto& entry : parsed.entries) {
    EXPECT_EQ(entry.uid, 0u) << entry.name;
    EXPECT_EQ(entry.gid, 0u) << entry.name;
    EXPECT_EQ(entry.mtime, 0u) << entry.name;
    inodes.insert(entry.inode);
  }
  EXPECT_EQ(inodes.size(), parsed.entries.size()) << "every entry has an inode of its own";
}

TEST(CpioWriterTest, SameInputSameBytes) {
  EXPECT_EQ(sample_archive(), sample_archive());
}

TEST(CpioWriterTest, AnEmptyArchiveIsJustTheTrailer) {
  CpioWriter cpio;
  const auto archive = cpio.archive();
  const auto parsed = read_cpio(archive);
  EXPECT_TRUE(parsed.has_trailer);
  EXPECT_TRUE(parsed.entries.empty());
  EXPECT_EQ(archive.size(), 124u);  // header 110 + "TRAILER!!!\0" 11, padded to 4
  EXPECT_EQ(cpio.size(), 124u);
}

TEST(CpioWriterTest, AFillerWritesItsFileInPlace) {
  CpioWriter cpio;
  cpio.add_file("filled", 0644, 5, [](std::span<uint8_t> out) {
    ASSERT_EQ(out.size(), 5u);
    std::memcpy(out.data(), "hello", 5);
  });
  EXPECT_EQ(read_cpio(cpio.archive()).find("filled")->text(), "hello");
}

// Guest memory is not known to be zero: every byte of the archive is written, padding included.
TEST(CpioWriterTest, WriteToFillsTheWholeBuffer) {
  CpioWriter cpio;
  add_sample_entries(cpio);
  std::vector<uint8_t> buffer(cpio.size(), 0xa5);
  cpio.write_to(buffer);
  EXPECT_EQ(buffer, sample_archive());
  std::vector<uint8_t> wrong(cpio.size() + 1);
  EXPECT_THAT(error_of([&] { cpio.write_to(wrong); }), HasSubstr("bytes of room for a"));
}

TEST(CpioWriterTest, RefusesAbsoluteAndEmptyNames) {
  CpioWriter cpio;
  EXPECT_THAT(error_of([&] { cpio.add_directory("/dev", 0755); }), HasSubstr("\"/dev\""));
  EXPECT_THAT(error_of([&] { cpio.add_file("", 0644, {}); }), HasSubstr("bad archive entry name"));
}

// GNU cpio, the reference: it lists the archive and extracts it (all but the device node, which
// would need root) to the same bytes.
TEST(CpioWriterTest, GnuCpioListsAndExtractsIt) {
  if (!run("command -v cpio >/dev/null")) GTEST_SKIP() << "cpio is not installed";
  TempDir dir;
  const std::string archive = dir.file("test.cpio");
  const auto bytes = sample_archive();
  std::ofstream(archive, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));

  const auto listing = run("cpio -it --quiet < " + archive);
  ASSERT_TRUE(listing) << "cpio -t failed";
  EXPECT_EQ(*listing, "init\ndev\ndev/console\na\na/one\na/four\na/seven\na/empty\n");
  const auto long_listing = run("cpio -itv --quiet < " + archive + " | grep console");
  ASSERT_TRUE(long_listing);
  EXPECT_THAT(*long_listing, ::testing::StartsWith("crw-------"));
  EXPECT_THAT(*long_listing, HasSubstr("5,"));

  const std::string out = dir.file("out");
  ASSERT_TRUE(
      run("mkdir " + out + " && cpio -id --quiet -D " + out + " -f dev/console < " + archive));
  const auto contents = [&](const std::string& name) {
    std::ifstream in(out + "/" + name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  EXPECT_EQ(contents("init"),
            "\x7f"
            "ELF and the rest");
  EXPECT_EQ(contents("a/seven"), "seven!!");
  EXPECT_EQ(contents("a/four"), "four");
  struct stat st {};
  ASSERT_EQ(::stat((out + "/init").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

}  // namespace
}  // namespace vmm::boot
