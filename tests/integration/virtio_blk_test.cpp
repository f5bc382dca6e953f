// Boots guest-tests/virtio_blk with `--disk` images: the guest's own virtio-mmio driver checks
// the block device from inside (features, capacity, GET_ID, reads, write + flush, error statuses),
// and this side checks what reached the image files. Plus `--disk` errors that stop vmm early.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/integration/guest_run.hpp"
#include "tests/integration/process.hpp"

namespace vmm::testing {
namespace {

constexpr size_t kSector = 512;
constexpr uint64_t kWriteLba = 4;  // WRITE_LBA in guest-tests/virtio_blk/main.c

// The image pattern guest-tests/virtio_blk/main.c expects: byte j of sector `lba` on disk `disk`
// is byte j of the little-endian LBA for j < 8, else disk * 0x40 + lba * 7 + j (mod 256).
uint8_t pattern_byte(unsigned disk, uint64_t lba, size_t j) {
  return j < 8 ? static_cast<uint8_t>(lba >> (8 * j))
               : static_cast<uint8_t>(disk * 0x40 + lba * 7 + j);
}

std::vector<uint8_t> pattern_image(unsigned disk, size_t bytes) {
  std::vector<uint8_t> image(bytes);
  for (size_t i = 0; i < bytes; ++i) image[i] = pattern_byte(disk, i / kSector, i % kSector);
  return image;
}

// What the guest writes to kWriteLba of a writable disk.
std::vector<uint8_t> written_sector(unsigned disk) {
  std::vector<uint8_t> sector(kSector);
  for (size_t j = 0; j < kSector; ++j) sector[j] = static_cast<uint8_t>(0xa5 ^ (j * 3) ^ disk);
  return sector;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

class VirtioBlkGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const std::string why = kvm_unavailable_reason(); !why.empty()) {
      GTEST_SKIP() << "cannot boot guests here: " << why;
    }
  }

  void TearDown() override {
    for (const auto& path : files_) ::unlink(path.c_str());
  }

  std::string file(const std::string& name, const std::vector<uint8_t>& bytes) {
    std::string path =
        ::testing::TempDir() + "/vmm_virtio_blk_" + std::to_string(::getpid()) + "_" + name;
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    files_.push_back(path);
    return path;
  }

  std::vector<std::string> files_;
};

// Each of `lines` is a whole line of the guest's console output (which ends lines with CRLF).
void expect_lines(const ProcessResult& r, const std::vector<std::string>& lines) {
  std::string console = "\n" + r.out;
  std::erase(console, '\r');
  for (const auto& line : lines) {
    EXPECT_NE(console.find("\nvirtio-blk: " + line + "\n"), std::string::npos)
        << "missing \"" << line << "\"\n"
        << describe(r);
  }
}

// A writable 1 MiB disk and a read-only one of 3 MiB + 100 bytes (the guest sees whole sectors
// only), each with a serial; the second serial is the full 20 bytes, so it arrives unterminated.
TEST_F(VirtioBlkGuest, ChecksAWritableAndAReadOnlyDisk) {
  const std::vector<uint8_t> original0 = pattern_image(0, 1 << 20);
  const std::vector<uint8_t> original1 = pattern_image(1, (3 << 20) + 100);
  const std::string disk0 = file("disk0.img", original0);
  const std::string disk1 = file("disk1.img", original1);
  const std::string serial1 = "ro-disk-serial-20chr";
  ASSERT_EQ(serial1.size(), 20u);

  GuestRun run{.kernel = test_guest_image("virtio_blk"), .cmdline = "disks=2 ro=2"};
  run.extra_args = {"--disk", disk0 + ",serial=vmm-disk-0", "--disk",
                    disk1 + ",readonly=on,serial=" + serial1};
  const ProcessResult r = run_vmm(run);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << describe(r);
  expect_lines(r, {
                      "disk0 is a virtio-mmio v2 block device at d0000000",
                      "disk1 is a virtio-mmio v2 block device at d0001000",
                      "disk0 negotiation ok",
                      "disk0 capacity 2048 sectors",
                      "disk1 capacity 6144 sectors",
                      "disk0 read-only feature ok",
                      "disk1 read-only feature ok",
                      "disk0 serial 'vmm-disk-0'",
                      "disk1 serial '" + serial1 + "'",
                      "disk0 get-id ok",
                      "disk0 read lba 0 ok",
                      "disk0 read lba 2-3 in two buffers ok",
                      "disk1 read last two sectors ok",
                      "disk0 read past the end ok",
                      "disk1 read across the end ok",
                      "disk0 unknown request ok",
                      "disk0 write ok",
                      "disk0 flush ok",
                      "disk0 read back ok",
                      "disk1 write refused ok",
                      "disk1 read back unchanged ok",
                      "all 2 disks ok",
                  });

  std::vector<uint8_t> want0 = original0;
  const std::vector<uint8_t> sector = written_sector(0);
  std::copy(sector.begin(), sector.end(), want0.begin() + kWriteLba * kSector);
  const std::vector<uint8_t> got0 = read_file(disk0);
  ASSERT_EQ(got0.size(), want0.size());
  EXPECT_TRUE(std::equal(got0.begin() + kWriteLba * kSector,
                         got0.begin() + (kWriteLba + 1) * kSector, sector.begin()))
      << "the guest's write did not reach sector " << kWriteLba << " of " << disk0;
  EXPECT_TRUE(got0 == want0) << disk0 << " changed outside sector " << kWriteLba;
  EXPECT_TRUE(read_file(disk1) == original1) << "the read-only " << disk1 << " changed";
}

// The thread-pool engine: its workers do the disk I/O under their own seccomp filter.
TEST_F(VirtioBlkGuest, ChecksADiskServedByTheThreadPool) {
  const std::string disk0 = file("disk0.img", pattern_image(0, 1 << 20));
  GuestRun run{.kernel = test_guest_image("virtio_blk"), .cmdline = "disks=1"};
  run.extra_args = {"--disk", disk0 + ",io=threads"};
  const ProcessResult r = run_vmm(run);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_EQ(r.out.find("FAILED"), std::string::npos) << describe(r);
  expect_lines(r, {"disk0 write ok", "disk0 flush ok", "disk0 read back ok", "all 1 disks ok"});
  const std::vector<uint8_t> sector = written_sector(0);
  const std::vector<uint8_t> got0 = read_file(disk0);
  ASSERT_EQ(got0.size(), size_t{1} << 20);
  EXPECT_TRUE(std::equal(sector.begin(), sector.end(), got0.begin() + kWriteLba * kSector));
}

// The guest fails (and says which check) when the host's view disagrees with the device's: here
// it expects a read-only disk that vmm was told is writable.
TEST_F(VirtioBlkGuest, FailsWhenTheReadOnlyFlagDisagrees) {
  const std::vector<uint8_t> original = pattern_image(0, 64 * kSector);
  const std::string disk = file("disk.img", original);
  GuestRun run{.kernel = test_guest_image("virtio_blk"), .cmdline = "disks=1 ro=1"};
  run.extra_args = {"--disk", disk};
  const ProcessResult r = run_vmm(run);
  ASSERT_TRUE(r.exited) << describe(r);
  EXPECT_EQ(r.exit_status, 1) << describe(r);
  expect_lines(r, {"disk0 capacity 64 sectors", "disk0 read-only feature FAILED", "disk0 write ok",
                   "1 checks failed"});
}

class VirtioBlkBadInput : public VirtioBlkGuest {
 protected:
  // Runs vmm with `extra_args` and expects a non-zero status with exactly one stderr line that
  // contains every fragment (case-insensitively) and no guest output.
  void expect_error(const std::vector<std::string>& extra_args,
                    const std::vector<std::string>& fragments) {
    GuestRun run{.kernel = test_guest_image("virtio_blk"), .cmdline = "disks=1"};
    run.extra_args = extra_args;
    run.host_timeout = std::chrono::seconds(30);
    const ProcessResult r = run_vmm(run);
    ASSERT_TRUE(r.exited) << describe(r);
    EXPECT_NE(r.exit_status, 0) << describe(r);
    EXPECT_EQ(r.err.rfind("vmm: ", 0), 0u) << describe(r);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << describe(r);
    std::string err = r.err;
    std::transform(err.begin(), err.end(), err.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (std::string fragment : fragments) {
      std::transform(fragment.begin(), fragment.end(), fragment.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      EXPECT_NE(err.find(fragment), std::string::npos) << "no \"" << fragment << "\"\n"
                                                       << describe(r);
    }
    EXPECT_EQ(r.out.find("virtio-blk:"), std::string::npos) << describe(r);
  }
};

TEST_F(VirtioBlkBadInput, DiskThatDoesNotExist) {
  expect_error({"--disk", "/nonexistent"}, {"--disk /nonexistent", "No such file or directory"});
}

// Two writable disks on one image would corrupt it: the second open finds the first's lock.
TEST_F(VirtioBlkBadInput, SameImageTwiceAsWritableDisks) {
  const std::string disk = file("shared.img", pattern_image(0, 64 * kSector));
  expect_error({"--disk", disk, "--disk", disk}, {"--disk " + disk, "lock"});
}

}  // namespace
}  // namespace vmm::testing
