#include "devices/virtio/block.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/event_fd.hpp"
#include "tests/devices/device_owner.hpp"
#include "tests/devices/virtio/device_state.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using ::testing::Contains;
using testing::Driver;
using ::testing::ElementsAre;
using ::testing::Not;

constexpr uint64_t kRamSize = 4 << 20;
constexpr uint64_t kIndirect = 0x8000;  // past the queue's rings (queue_config)
constexpr uint64_t kHeaders = 0x10000;  // 16 bytes per head index
constexpr uint64_t kStatus = 0x20000;   // one byte per head index
constexpr uint64_t kData = 0x100000;
constexpr uint64_t kDiskSectors = 64;
constexpr uint64_t kDiskSize = kDiskSectors * 512;

uint8_t pattern(uint64_t offset) {
  return static_cast<uint8_t>(offset * 7 + offset / 512 + 1);
}

// A temporary image file filled with pattern(), removed when done.
class TempImage {
 public:
  explicit TempImage(uint64_t size) {
    char path[] = "/tmp/vmm-virtio-block-XXXXXX";
    fd_ = mkstemp(path);
    if (fd_ < 0) throw std::runtime_error("mkstemp failed");
    unlink(path);
    std::vector<uint8_t> bytes(size);
    for (uint64_t i = 0; i < size; ++i) bytes[i] = pattern(i);
    if (pwrite(fd_, bytes.data(), size, 0) != static_cast<ssize_t>(size)) {
      throw std::runtime_error("pwrite failed");
    }
  }
  ~TempImage() { close(fd_); }
  int fd() const { return fd_; }
  std::vector<uint8_t> read(uint64_t offset, uint64_t size) const {
    std::vector<uint8_t> bytes(size);
    EXPECT_EQ(pread(fd_, bytes.data(), size, offset), static_cast<ssize_t>(size));
    return bytes;
  }

 private:
  int fd_;
};

// Executes requests synchronously on the file when flushed (or, with `hold`, when the test says),
// then signals the eventfd like an engine.
class FakeIo final : public AsyncIo {
 public:
  explicit FakeIo(int fd) : fd_(fd) {}

  std::string name() const override { return "fake"; }
  void submit(IoRequest request) override {
    // The real engines refuse more than their depth: so does the fake.
    if (in_flight() >= VirtioBlock::kQueueSize) throw std::runtime_error("engine full");
    ops.push_back(request.op);
    queued_.push_back(std::move(request));
  }
  void flush_submissions() override {
    for (auto& request : queued_) started.push_back(std::move(request));
    queued_.clear();
    if (!hold) finish_all();
  }
  int completion_fd() const override { return event_.fd(); }
  size_t reap(const std::function<void(const IoCompletion&)>& on_complete) override {
    event_.consume();
    const std::vector<IoCompletion> done = std::move(done_);
    done_.clear();
    for (const IoCompletion& completion : done) on_complete(completion);
    return done.size();
  }
  size_t in_flight() const override { return queued_.size() + started.size() + done_.size(); }
  // What is not flushed yet is given up; what was flushed is under way and runs to its end.
  void cancel_all() override {
    ++cancels;
    for (IoRequest& request : queued_) done_.push_back({request.cookie, -ECANCELED});
    if (!queued_.empty()) event_.signal();
    queued_.clear();
  }
  void wait_all(const std::function<void(const IoCompletion&)>& on_complete) override {
    flush_submissions();
    finish_all();
    reap(on_complete);
  }

  // Completes the started request at `index`.
  void finish(size_t index) {
    IoRequest request = std::move(started.at(index));
    started.erase(started.begin() + static_cast<ptrdiff_t>(index));
    done_.push_back({request.cookie, execute(request)});
    event_.signal();
  }
  void finish_all() {
    while (!started.empty()) finish(0);
  }

  bool hold = false;  // keep flushed requests in `started` until finish()
  int cancels = 0;
  bool punch_hole_unsupported = false;
  bool zero_range_unsupported = false;
  std::optional<int64_t> next_result;  // replaces the result of the next request
  std::vector<IoRequest::Op> ops;
  std::deque<IoRequest> started;

 private:
  int64_t execute(const IoRequest& request) {
    if (request.op == IoRequest::Op::kPunchHole && punch_hole_unsupported) return -EOPNOTSUPP;
    if (request.op == IoRequest::Op::kZeroRange && zero_range_unsupported) return -EOPNOTSUPP;
    const int64_t result = execute_blocking(fd_, request);
    if (next_result) return *std::exchange(next_result, std::nullopt);
    return result;
  }

  int fd_;
  EventFd event_;
  std::vector<IoRequest> queued_;
  std::vector<IoCompletion> done_;
};

// A data buffer of a request: guest address, length, device-writable.
struct Data {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

class VirtioBlockTest : public ::testing::Test {
 protected:
  void create(BlockOptions options = {}, uint64_t disk_size = kDiskSize) {
    device.reset();
    image.emplace(disk_size);
    auto fake = std::make_unique<FakeIo>(image->fd());
    io = fake.get();
    device.emplace(memory, loop, disk_size, std::move(fake), std::move(options), "vda");
  }

  void activate(uint64_t features, bool event_idx = false) {
    testing::activate_queue(queue, driver, 0, event_idx);
    device->activate(Activation{features, {&queue}, &interrupt});
  }

  void start(BlockOptions options = {}, uint64_t disk_size = kDiskSize) {
    create(std::move(options), disk_size);
    activate(device->features());
  }

  // Writes a request into descriptors first, first+1, ...: the header, `data`, then a 1-byte
  // status buffer (preset to 0xff) unless `with_status` is false. Returns the head.
  uint16_t write_request(uint16_t first, uint32_t type, uint64_t sector,
                         const std::vector<Data>& data, bool with_status = true) {
    const uint64_t header = kHeaders + 16ull * first;
    EXPECT_TRUE(memory.write_obj(header, type));
    EXPECT_TRUE(memory.write_obj(header + 4, uint32_t{0}));
    EXPECT_TRUE(memory.write_obj(header + 8, sector));
    const size_t count = 1 + data.size() + (with_status ? 1 : 0);
    uint16_t index = first;
    auto add = [&](uint64_t addr, uint32_t len, bool writable) {
      const bool last = index == first + count - 1;
      const uint16_t flags = (writable ? kVirtqDescFWrite : 0) | (last ? 0 : kVirtqDescFNext);
      driver.desc(index, addr, len, flags, static_cast<uint16_t>(index + 1));
      ++index;
    };
    add(header, 16, false);
    for (const Data& buffer : data) add(buffer.addr, buffer.len, buffer.writable);
    if (with_status) {
      EXPECT_TRUE(memory.write_obj(status_gpa(first), uint8_t{0xff}));
      add(status_gpa(first), 1, true);
    }
    return first;
  }
  static uint64_t status_gpa(uint16_t head) { return kStatus + head; }
  uint8_t status(uint16_t head) const { return *memory.read_obj<uint8_t>(status_gpa(head)); }

  void publish(uint16_t head) {
    driver.publish(head);
    device->notify(0);
  }

  // Runs the event loop until the used ring holds `count` entries.
  void run_until_used(uint16_t count) {
    for (int i = 0; i < 50 && driver.used_idx() < count; ++i) loop.run_once(100);
    ASSERT_EQ(driver.used_idx(), count);
  }

  // One request, run to completion; returns its status byte.
  uint8_t execute(uint32_t type, uint64_t sector, const std::vector<Data>& data) {
    const uint16_t head = write_request(next_desc_, type, sector, data);
    next_desc_ = static_cast<uint16_t>(next_desc_ + data.size() + 2);
    publish(head);
    run_until_used(++completed_);
    EXPECT_EQ(driver.used(completed_ - 1).id, head);
    return status(head);
  }

  std::vector<uint8_t> guest(uint64_t gpa, uint64_t size) const {
    std::vector<uint8_t> bytes(size);
    EXPECT_TRUE(memory.read(gpa, bytes));
    return bytes;
  }
  void fill_guest(uint64_t gpa, uint64_t size, uint8_t value) {
    std::vector<uint8_t> bytes(size, value);
    ASSERT_TRUE(memory.write(gpa, bytes));
  }
  static std::vector<uint8_t> expected_pattern(uint64_t offset, uint64_t size) {
    std::vector<uint8_t> bytes(size);
    for (uint64_t i = 0; i < size; ++i) bytes[i] = pattern(offset + i);
    return bytes;
  }
  uint32_t last_used_len() const { return driver.used(driver.used_idx() - 1).len; }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  EventLoop loop;
  SplitQueue queue{memory, VirtioBlock::kQueueSize};
  Driver driver{memory, testing::queue_config(0, VirtioBlock::kQueueSize)};
  testing::FakeDeviceInterrupt interrupt;
  std::optional<TempImage> image;
  FakeIo* io = nullptr;
  std::optional<VirtioBlock> device;
  uint16_t next_desc_ = 0;
  uint16_t completed_ = 0;
};

TEST_F(VirtioBlockTest, ReadsIntoGuestMemory) {
  start();
  EXPECT_EQ(execute(kBlkTypeIn, 2, {{kData, 1024, true}, {kData + 0x2000, 1024, true}}),
            kBlkStatusOk);
  EXPECT_EQ(guest(kData, 1024), expected_pattern(2 * 512, 1024));
  EXPECT_EQ(guest(kData + 0x2000, 1024), expected_pattern(4 * 512, 1024));
  EXPECT_EQ(last_used_len(), 2049u);  // data + status
  EXPECT_EQ(interrupt.used, 1);
  const DeviceMetricsSnapshot metrics = device->metrics();
  EXPECT_EQ(metrics.requests, 1u);
  EXPECT_EQ(metrics.bytes, 2048u);
  EXPECT_EQ(metrics.errors, 0u);
}

TEST_F(VirtioBlockTest, WritesToTheImageAndReadsBack) {
  start();
  std::vector<uint8_t> data(1024);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ 0x5a);
  ASSERT_TRUE(memory.write(kData, data));
  EXPECT_EQ(execute(kBlkTypeOut, 10, {{kData, 1024, false}}), kBlkStatusOk);
  EXPECT_EQ(last_used_len(), 1u);
  EXPECT_EQ(image->read(10 * 512, 1024), data);
  EXPECT_EQ(image->read(9 * 512, 512), expected_pattern(9 * 512, 512));  // neighbours intact
  EXPECT_EQ(image->read(12 * 512, 512), expected_pattern(12 * 512, 512));
  EXPECT_THAT(io->ops, Not(Contains(IoRequest::Op::kFlush)));  // write-back with FLUSH

  EXPECT_EQ(execute(kBlkTypeIn, 10, {{kData + 0x10000, 1024, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData + 0x10000, 1024), data);
}

TEST_F(VirtioBlockTest, WritesThroughWhenFlushIsNotNegotiated) {
  create();
  activate(device->features() & ~kBlkFeatureFlush);
  EXPECT_EQ(execute(kBlkTypeOut, 0, {{kData, 512, false}}), kBlkStatusOk);
  EXPECT_THAT(io->ops, ElementsAre(IoRequest::Op::kWrite, IoRequest::Op::kFlush));
}

TEST_F(VirtioBlockTest, FlushStatusIsWrittenOnlyWhenTheSyncCompletes) {
  start();
  io->hold = true;
  const uint16_t head = write_request(0, kBlkTypeFlush, 0, {});
  publish(head);
  loop.run_once(0);
  EXPECT_THAT(io->ops, ElementsAre(IoRequest::Op::kFlush));
  EXPECT_EQ(status(head), 0xff);
  EXPECT_EQ(driver.used_idx(), 0);
  io->finish_all();
  run_until_used(1);
  EXPECT_EQ(status(head), kBlkStatusOk);
  EXPECT_EQ(last_used_len(), 1u);
}

TEST_F(VirtioBlockTest, GetIdPadsTheSerialWithZeros) {
  start(BlockOptions{.serial = "disk-01"});
  fill_guest(kData, 32, 0xee);
  EXPECT_EQ(execute(kBlkTypeGetId, 0, {{kData, 20, true}}), kBlkStatusOk);
  std::vector<uint8_t> expected(20, 0);
  std::memcpy(expected.data(), "disk-01", 7);
  EXPECT_EQ(guest(kData, 20), expected);
  EXPECT_EQ(last_used_len(), 21u);
  EXPECT_TRUE(io->ops.empty());  // no disk access
}

TEST_F(VirtioBlockTest, GetIdFillsAShortBufferAndAFullLengthSerialHasNoNul) {
  start(BlockOptions{.serial = "ABCDEFGHIJKLMNOPQRST"});
  fill_guest(kData, 32, 0xee);
  EXPECT_EQ(execute(kBlkTypeGetId, 0, {{kData, 8, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 9), std::vector<uint8_t>({'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 0xee}));
  EXPECT_EQ(last_used_len(), 9u);

  EXPECT_EQ(execute(kBlkTypeGetId, 0, {{kData + 64, 32, true}}), kBlkStatusOk);
  const std::vector<uint8_t> id = guest(kData + 64, 20);
  EXPECT_EQ(std::string(id.begin(), id.end()), "ABCDEFGHIJKLMNOPQRST");
}

// The segment of a discard or write-zeroes request at `gpa`.
void write_segment(const GuestMemory& memory, uint64_t gpa, uint64_t sector, uint32_t sectors,
                   uint32_t flags) {
  ASSERT_TRUE(memory.write_obj(gpa, sector));
  ASSERT_TRUE(memory.write_obj(gpa + 8, sectors));
  ASSERT_TRUE(memory.write_obj(gpa + 12, flags));
}

TEST_F(VirtioBlockTest, DiscardAndWriteZeroesReadBackZeros) {
  start();
  const std::vector<uint8_t> zeros(4 * 512, 0);
  write_segment(memory, kData, 4, 4, 0);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData, 16, false}}), kBlkStatusOk);
  EXPECT_EQ(image->read(4 * 512, 4 * 512), zeros);
  EXPECT_EQ(image->read(3 * 512, 512), expected_pattern(3 * 512, 512));
  EXPECT_EQ(image->read(8 * 512, 512), expected_pattern(8 * 512, 512));
  EXPECT_EQ(io->ops.back(), IoRequest::Op::kPunchHole);

  write_segment(memory, kData + 32, 16, 4, 0);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData + 32, 16, false}}), kBlkStatusOk);
  EXPECT_EQ(image->read(16 * 512, 4 * 512), zeros);
  EXPECT_EQ(image->read(20 * 512, 512), expected_pattern(20 * 512, 512));

  write_segment(memory, kData + 64, 24, 4, kBlkFlagUnmap);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData + 64, 16, false}}), kBlkStatusOk);
  EXPECT_EQ(image->read(24 * 512, 4 * 512), zeros);
  EXPECT_EQ(io->ops.back(), IoRequest::Op::kPunchHole);

  // And the guest reads them back as zeros.
  fill_guest(kData + 0x1000, 4 * 512, 0xee);
  EXPECT_EQ(execute(kBlkTypeIn, 4, {{kData + 0x1000, 4 * 512, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData + 0x1000, 4 * 512), zeros);
}

TEST_F(VirtioBlockTest, WriteZeroesFallsBackToWritingZeros) {
  start();
  io->punch_hole_unsupported = true;
  io->zero_range_unsupported = true;
  write_segment(memory, kData, 8, 4, kBlkFlagUnmap);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData, 16, false}}), kBlkStatusOk);
  EXPECT_THAT(io->ops, ElementsAre(IoRequest::Op::kPunchHole, IoRequest::Op::kZeroRange,
                                   IoRequest::Op::kWrite));
  EXPECT_EQ(image->read(8 * 512, 4 * 512), std::vector<uint8_t>(4 * 512, 0));
  EXPECT_EQ(image->read(12 * 512, 512), expected_pattern(12 * 512, 512));

  // A discard the file system cannot do is still a success: it only allows deallocation.
  write_segment(memory, kData + 32, 0, 1, 0);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData + 32, 16, false}}), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, DiscardAndWriteZeroesValidateTheSegment) {
  start();
  write_segment(memory, kData, 0, 1, kBlkFlagUnmap);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData, 16, false}}), kBlkStatusUnsupp);
  write_segment(memory, kData + 32, 0, 1, 2);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData + 32, 16, false}}), kBlkStatusUnsupp);
  write_segment(memory, kData + 64, kDiskSectors - 1, 2, 0);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData + 64, 16, false}}), kBlkStatusIoErr);
  write_segment(memory, kData + 96, std::numeric_limits<uint64_t>::max(), 1, 0);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData + 96, 16, false}}), kBlkStatusIoErr);
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(image->read(0, kDiskSize), expected_pattern(0, kDiskSize));
}

TEST_F(VirtioBlockTest, DiscardIsUnsupportedUnlessNegotiated) {
  create();
  activate(device->features() & ~(kBlkFeatureDiscard | kBlkFeatureWriteZeroes));
  write_segment(memory, kData, 0, 1, 0);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData, 16, false}}), kBlkStatusUnsupp);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData, 16, false}}), kBlkStatusUnsupp);
  EXPECT_TRUE(io->ops.empty());
}

TEST_F(VirtioBlockTest, OutOfRangeSectorsAreRefused) {
  start();
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(execute(kBlkTypeOut, kDiskSectors, {{kData, 512, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeOut, kDiskSectors - 1, {{kData, 1024, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeOut, max, {{kData, 512, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeOut, max / 512, {{kData, 512, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeIn, max - 1, {{kData, 1024, true}}), kBlkStatusIoErr);
  EXPECT_EQ(last_used_len(), 1u);
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(image->read(0, kDiskSize), expected_pattern(0, kDiskSize));

  // The last sector exactly is fine.
  fill_guest(kData, 512, 0x33);
  EXPECT_EQ(execute(kBlkTypeOut, kDiskSectors - 1, {{kData, 512, false}}), kBlkStatusOk);
  EXPECT_EQ(image->read(kDiskSize - 512, 512), std::vector<uint8_t>(512, 0x33));
  EXPECT_EQ(execute(kBlkTypeIn, kDiskSectors - 1, {{kData + 4096, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData + 4096, 512), std::vector<uint8_t>(512, 0x33));
}

TEST_F(VirtioBlockTest, ReadOnlyDiskRefusesWrites) {
  start(BlockOptions{.read_only = true, .serial = {}});
  fill_guest(kData, 512, 0x33);
  EXPECT_EQ(execute(kBlkTypeOut, 0, {{kData, 512, false}}), kBlkStatusIoErr);
  write_segment(memory, kData + 1024, 0, 1, 0);
  EXPECT_EQ(execute(kBlkTypeDiscard, 0, {{kData + 1024, 16, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeWriteZeroes, 0, {{kData + 1024, 16, false}}), kBlkStatusIoErr);
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(image->read(0, kDiskSize), expected_pattern(0, kDiskSize));
  // Reads and flushes still work.
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(0, 512));
  EXPECT_EQ(execute(kBlkTypeFlush, 0, {}), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, UnknownTypeIsUnsupported) {
  start();
  EXPECT_EQ(execute(99, 0, {{kData, 512, true}}), kBlkStatusUnsupp);
  EXPECT_EQ(execute(2, 0, {}), kBlkStatusUnsupp);  // VIRTIO_BLK_T_SCSI_CMD_OUT (legacy)
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(device->metrics().errors, 2u);
  EXPECT_EQ(device->metrics().requests, 0u);
}

TEST_F(VirtioBlockTest, UnalignedLengthIsRefused) {
  start();
  EXPECT_EQ(execute(kBlkTypeOut, 0, {{kData, 513, false}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 100, true}}), kBlkStatusIoErr);
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(image->read(0, kDiskSize), expected_pattern(0, kDiskSize));
}

TEST_F(VirtioBlockTest, ShortTransferIsAnError) {
  start();
  io->next_result = 512;
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 1024, true}}), kBlkStatusIoErr);
  io->next_result = -EIO;
  EXPECT_EQ(execute(kBlkTypeFlush, 0, {}), kBlkStatusIoErr);
  EXPECT_EQ(device->metrics().errors, 2u);
  EXPECT_EQ(device->metrics().bytes, 0u);
}

TEST_F(VirtioBlockTest, TooManySegmentsAreRefused) {
  start({}, 256 * 512);
  // The header shares the first descriptor with data, so a full-length chain (256 descriptors)
  // carries 255 data segments: one more than seg_max.
  auto chain = [&](uint16_t segments) {
    ASSERT_TRUE(memory.write_obj(kHeaders, kBlkTypeOut));
    ASSERT_TRUE(memory.write_obj(kHeaders + 8, uint64_t{0}));
    driver.desc(0, kHeaders, 16 + 512, kVirtqDescFNext, 1);
    for (uint16_t i = 1; i < segments; ++i) {
      driver.desc(i, kData + 512ull * i, 512, kVirtqDescFNext, static_cast<uint16_t>(i + 1));
    }
    ASSERT_TRUE(memory.write_obj(status_gpa(0), uint8_t{0xff}));
    driver.desc(segments, status_gpa(0), 1, kVirtqDescFWrite);
    publish(0);
  };
  // 16 + 512 bytes at kHeaders: data comes from kHeaders + 16.
  fill_guest(kHeaders + 16, 512, 0x44);
  chain(kBlkSegMax + 1);
  run_until_used(1);
  EXPECT_EQ(status(0), kBlkStatusIoErr);
  EXPECT_TRUE(io->ops.empty());

  chain(kBlkSegMax);
  run_until_used(2);
  EXPECT_EQ(status(0), kBlkStatusOk);
  EXPECT_EQ(image->read(0, 512), std::vector<uint8_t>(512, 0x44));
}

TEST_F(VirtioBlockTest, ChainWithoutStatusByteIsCompletedEmpty) {
  start();
  const uint16_t head = write_request(0, kBlkTypeIn, 0, {{kData, 512, false}}, false);
  publish(head);
  run_until_used(1);
  EXPECT_EQ(driver.used(0).id, head);
  EXPECT_EQ(driver.used(0).len, 0u);
  EXPECT_TRUE(io->ops.empty());
  // The device carries on.
  const uint16_t next = write_request(4, kBlkTypeIn, 1, {{kData, 512, true}});
  publish(next);
  run_until_used(2);
  EXPECT_EQ(status(next), kBlkStatusOk);
  EXPECT_EQ(device->metrics().errors, 1u);
  EXPECT_EQ(device->metrics().requests, 1u);
}

TEST_F(VirtioBlockTest, HeaderSplitAcrossDescriptors) {
  start();
  ASSERT_TRUE(memory.write_obj(kHeaders, kBlkTypeIn));
  ASSERT_TRUE(memory.write_obj(kHeaders + 0x100, uint64_t{5}));  // the sector, elsewhere
  driver.desc(0, kHeaders, 8, kVirtqDescFNext, 1);
  driver.desc(1, kHeaders + 0x100, 8, kVirtqDescFNext, 2);
  driver.desc(2, kData, 512, kVirtqDescFWrite | kVirtqDescFNext, 3);
  driver.desc(3, status_gpa(0), 1, kVirtqDescFWrite);
  publish(0);
  run_until_used(1);
  EXPECT_EQ(status(0), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(5 * 512, 512));
}

TEST_F(VirtioBlockTest, HeaderTooShortIsAnError) {
  start();
  driver.desc(0, kHeaders, 12, kVirtqDescFNext, 1);
  driver.desc(1, status_gpa(0), 1, kVirtqDescFWrite);
  publish(0);
  run_until_used(1);
  EXPECT_EQ(status(0), kBlkStatusIoErr);
}

TEST_F(VirtioBlockTest, IndirectDescriptors) {
  start();
  ASSERT_TRUE(memory.write_obj(kHeaders, kBlkTypeIn));
  ASSERT_TRUE(memory.write_obj(kHeaders + 8, uint64_t{7}));
  driver.desc_at(kIndirect, 0, kHeaders, 16, kVirtqDescFNext, 1);
  driver.desc_at(kIndirect, 1, kData, 512, kVirtqDescFWrite | kVirtqDescFNext, 2);
  driver.desc_at(kIndirect, 2, kData + 0x1000, 513, kVirtqDescFWrite);  // data + status
  driver.desc(9, kIndirect, 3 * 16, kVirtqDescFIndirect);
  publish(9);
  run_until_used(1);
  EXPECT_EQ(driver.used(0).id, 9);
  EXPECT_EQ(driver.used(0).len, 1025u);
  EXPECT_EQ(*memory.read_obj<uint8_t>(kData + 0x1000 + 512), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(7 * 512, 512));
  EXPECT_EQ(guest(kData + 0x1000, 512), expected_pattern(8 * 512, 512));
}

TEST_F(VirtioBlockTest, RequestsCompleteOutOfOrder) {
  start();
  io->hold = true;
  const uint16_t a = write_request(0, kBlkTypeIn, 1, {{kData, 512, true}});
  const uint16_t b = write_request(3, kBlkTypeIn, 2, {{kData + 0x1000, 512, true}});
  const uint16_t c = write_request(6, kBlkTypeIn, 3, {{kData + 0x2000, 512, true}});
  driver.publish(a);
  driver.publish(b);
  driver.publish(c);
  device->notify(0);
  ASSERT_EQ(io->started.size(), 3u);  // all submitted in one batch
  io->finish(2);                      // c
  run_until_used(1);
  io->finish(0);  // a
  io->finish(0);  // b
  run_until_used(3);
  EXPECT_EQ(driver.used(0).id, c);
  EXPECT_EQ(driver.used(1).id, a);
  EXPECT_EQ(driver.used(2).id, b);
  for (uint16_t head : {a, b, c}) EXPECT_EQ(status(head), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(512, 512));
  EXPECT_EQ(guest(kData + 0x1000, 512), expected_pattern(1024, 512));
  EXPECT_EQ(guest(kData + 0x2000, 512), expected_pattern(1536, 512));
}

TEST_F(VirtioBlockTest, AHeadMadeAvailableAgainWhileInFlightNeverOverfillsTheEngine) {
  start();
  io->hold = true;
  const uint16_t head = write_request(0, kBlkTypeIn, 1, {{kData, 512, true}});
  // A hostile driver publishes the same chain over and over without waiting for it.
  for (int i = 0; i < VirtioBlock::kQueueSize; ++i) driver.publish(head);
  device->notify(0);
  for (int i = 0; i < 44; ++i) driver.publish(head);
  ASSERT_NO_THROW(device->notify(0));
  EXPECT_EQ(io->started.size(), VirtioBlock::kQueueSize);
  // Completions make room: the rest is started and every request is answered.
  io->finish_all();
  loop.run_once(100);
  io->hold = false;
  io->finish_all();
  run_until_used(VirtioBlock::kQueueSize + 44);
  EXPECT_EQ(status(head), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, ResetIsDoneOnceInFlightIoHasCompletedAndDropsTheChains) {
  start();
  io->hold = true;
  const uint16_t head = write_request(0, kBlkTypeIn, 0, {{kData, 512, true}});
  publish(head);
  ASSERT_EQ(io->in_flight(), 1u);
  bool reset_done = false;
  device->reset([&] { reset_done = true; });
  EXPECT_EQ(io->cancels, 1);
  EXPECT_FALSE(reset_done) << "reported done while the host may still write into guest memory";
  EXPECT_EQ(io->in_flight(), 1u);  // reset() did not wait for it
  io->finish_all();
  loop.run_once(100);
  EXPECT_TRUE(reset_done);
  EXPECT_EQ(driver.used_idx(), 0);
  EXPECT_EQ(status(head), 0xff);
  EXPECT_EQ(interrupt.used, 0);
  device->notify(0);  // not active: ignored
  EXPECT_EQ(io->ops.size(), 1u);

  // The driver sets the device up again; it works as new.
  io->hold = false;
  next_desc_ = 0;
  activate(device->features());
  EXPECT_EQ(execute(kBlkTypeIn, 1, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(512, 512));
}

// The "reset under load": a reset with a full queue of slow requests in flight leaves the
// loop free (an unrelated fd is dispatched while they run), and once the device reports the reset
// done nothing more lands in guest memory: not the data, not a status, not a used entry.
TEST_F(VirtioBlockTest, AResetUnderLoadLeavesTheLoopFreeAndNothingLandsInGuestMemoryAfterDone) {
  start();
  io->hold = true;
  constexpr int kRequests = VirtioBlock::kQueueSize / 3;  // three descriptors each
  for (int i = 0; i < kRequests; ++i) {
    driver.publish(write_request(static_cast<uint16_t>(3 * i), kBlkTypeIn, 0,
                                 {{kData + 512ull * i, 512, true}}));
  }
  device->notify(0);
  ASSERT_EQ(io->started.size(), static_cast<size_t>(kRequests));

  // What the guest sees of the data buffers and the status bytes when the reset is reported done.
  auto guest_view = [&] {
    std::vector<uint8_t> view = guest(kData, 512ull * kRequests);
    const std::vector<uint8_t> statuses = guest(kStatus, 3ull * kRequests);
    view.insert(view.end(), statuses.begin(), statuses.end());
    return view;
  };
  std::vector<uint8_t> at_done;
  device->reset([&] { at_done = guest_view(); });
  EventFd unrelated;
  int unrelated_calls = 0;
  loop.add(unrelated.fd(), EPOLLIN, [&](uint32_t) {
    unrelated.consume();
    ++unrelated_calls;
  });
  unrelated.signal();
  loop.run_once(100);
  EXPECT_EQ(unrelated_calls, 1) << "the loop is not free while the reset waits";
  EXPECT_TRUE(at_done.empty()) << "reset reported done with " << io->in_flight() << " in flight";

  // The slow requests finish one by one; the reset is done only after the last.
  while (!io->started.empty()) {
    io->finish(0);
    loop.run_once(0);
    if (!io->started.empty()) {
      EXPECT_TRUE(at_done.empty());
    }
  }
  loop.run_once(100);
  ASSERT_FALSE(at_done.empty());
  devices::testing::run_until_idle(loop);
  EXPECT_EQ(guest_view(), at_done);
  for (int i = 0; i < kRequests; ++i) EXPECT_EQ(status(static_cast<uint16_t>(3 * i)), 0xff);
  EXPECT_EQ(driver.used_idx(), 0);
  EXPECT_EQ(interrupt.used, 0);
  loop.remove(unrelated.fd());
}

TEST_F(VirtioBlockTest, DestroyingWithIoInFlightWaitsForIt) {
  start();
  io->hold = true;
  publish(write_request(0, kBlkTypeIn, 0, {{kData, 512, true}}));
  device.reset();  // must neither crash nor report the chain as leaked
  EXPECT_EQ(driver.used_idx(), 0);
}

TEST_F(VirtioBlockTest, BrokenQueueAsksForAReset) {
  start();
  driver.desc(0, kHeaders, 16, kVirtqDescFNext, 300);  // next beyond the table
  publish(0);
  EXPECT_EQ(interrupt.needs_reset, 1);
  driver.publish(0);
  device->notify(0);
  EXPECT_EQ(interrupt.needs_reset, 1);
  EXPECT_TRUE(io->ops.empty());
  EXPECT_EQ(device->metrics().errors, 1u);  // once, however often the driver notifies
}

TEST_F(VirtioBlockTest, EventIdxRearmsAfterDraining) {
  create();
  activate(device->features(), /*event_idx=*/true);
  driver.set_used_event(0);
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(driver.avail_event(), 1);  // wants a notification for the next buffer
  EXPECT_EQ(interrupt.used, 1);
  // used_event still 0: the second completion is not signalled.
  EXPECT_EQ(execute(kBlkTypeIn, 1, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(driver.avail_event(), 2);
  EXPECT_EQ(interrupt.used, 1);
}

TEST_F(VirtioBlockTest, ConfigSpaceLayout) {
  create();
  std::vector<uint8_t> config(72, 0xcc);
  device->read_config(0, config);
  auto u32 = [&](size_t offset) {
    uint32_t value;
    std::memcpy(&value, &config[offset], 4);
    return value;
  };
  uint64_t capacity;
  std::memcpy(&capacity, &config[0], 8);
  EXPECT_EQ(capacity, kDiskSectors);
  EXPECT_EQ(u32(8), kBlkSizeMax);  // size_max
  EXPECT_EQ(u32(12), kBlkSegMax);  // seg_max
  EXPECT_LE(u32(12), VirtioBlock::kQueueSize - 2u);
  EXPECT_EQ(u32(16), 0u);    // geometry
  EXPECT_EQ(u32(20), 512u);  // blk_size
  EXPECT_EQ(u32(24), 0u);    // topology
  EXPECT_EQ(u32(28), 0u);
  EXPECT_EQ(u32(32), 0u);  // writeback, num_queues
  EXPECT_EQ(u32(36), kBlkMaxDiscardSectors);
  EXPECT_EQ(u32(40), 1u);  // max_discard_seg
  EXPECT_EQ(u32(44), 8u);  // discard_sector_alignment
  EXPECT_EQ(u32(48), kBlkMaxWriteZeroesSectors);
  EXPECT_EQ(u32(52), 1u);    // max_write_zeroes_seg
  EXPECT_EQ(config[56], 1);  // write_zeroes_may_unmap
  EXPECT_EQ(std::vector<uint8_t>(config.begin() + 57, config.end()), std::vector<uint8_t>(15, 0));

  // A partial read, one straddling the end, one far beyond it.
  std::vector<uint8_t> part(4);
  device->read_config(20, part);
  EXPECT_EQ(part, std::vector<uint8_t>({0, 2, 0, 0}));
  std::vector<uint8_t> tail(8, 0xcc);
  device->read_config(56, tail);
  EXPECT_EQ(tail, std::vector<uint8_t>({1, 0, 0, 0, 0, 0, 0, 0}));
  device->read_config(std::numeric_limits<uint64_t>::max() - 2, tail);
  EXPECT_EQ(tail, std::vector<uint8_t>(8, 0));
}

TEST_F(VirtioBlockTest, Features) {
  create();
  EXPECT_EQ(device->device_id(), kDeviceIdBlock);
  EXPECT_THAT(device->queue_max_sizes(), ElementsAre(256));
  const uint64_t common = kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc |
                          kBlkFeatureSegMax | kBlkFeatureSizeMax | kBlkFeatureBlkSize |
                          kBlkFeatureFlush;
  EXPECT_EQ(device->features(), common | kBlkFeatureDiscard | kBlkFeatureWriteZeroes);
  create(BlockOptions{.read_only = true, .serial = {}});
  EXPECT_EQ(device->features(), common | kBlkFeatureRo);
}

TEST_F(VirtioBlockTest, CapacityRoundsDownToWholeSectors) {
  start({}, 1000);
  EXPECT_EQ(device->capacity_sectors(), 1u);
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(guest(kData, 512), expected_pattern(0, 512));
  EXPECT_EQ(execute(kBlkTypeIn, 1, {{kData, 512, true}}), kBlkStatusIoErr);
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 1024, true}}), kBlkStatusIoErr);
}

// The same device over the real engines: requests in flight, write, read back, zero, flush.
class VirtioBlockEngineTest : public VirtioBlockTest,
                              public ::testing::WithParamInterface<AsyncIo::Engine> {};

TEST_P(VirtioBlockEngineTest, ServesRequests) {
  image.emplace(kDiskSize);
  device.emplace(memory, loop, kDiskSize,
                 AsyncIo::create(image->fd(), VirtioBlock::kQueueSize, GetParam()), BlockOptions{},
                 "vda");
  activate(device->features());
  fill_guest(kData, 2048, 0x21);
  const uint16_t write = write_request(0, kBlkTypeOut, 8, {{kData, 2048, false}});
  const uint16_t read = write_request(3, kBlkTypeIn, 0, {{kData + 0x1000, 1024, true}});
  write_segment(memory, kData + 0x2000, 20, 4, 0);
  const uint16_t zero = write_request(6, kBlkTypeWriteZeroes, 0, {{kData + 0x2000, 16, false}});
  driver.publish(write);
  driver.publish(read);
  driver.publish(zero);
  device->notify(0);
  run_until_used(3);
  for (uint16_t head : {write, read, zero}) EXPECT_EQ(status(head), kBlkStatusOk);
  EXPECT_EQ(image->read(8 * 512, 2048), std::vector<uint8_t>(2048, 0x21));
  EXPECT_EQ(guest(kData + 0x1000, 1024), expected_pattern(0, 1024));
  EXPECT_EQ(image->read(20 * 512, 4 * 512), std::vector<uint8_t>(4 * 512, 0));
  completed_ = 3;
  next_desc_ = 9;
  EXPECT_EQ(execute(kBlkTypeFlush, 0, {}), kBlkStatusOk);
}

// ---- Rate limit ----

// 20 requests a second, a burst of one: the second request waits 50 ms for its token.
constexpr RateLimit kOnePerFiftyMs{.ops_per_second = 20, .ops_burst = 1};

TEST_F(VirtioBlockTest, ARequestOverTheRateLimitWaitsForTheTimerAndIsNotRefused) {
  start(BlockOptions{.rate_limit = kOnePerFiftyMs});
  const uint16_t first = write_request(0, kBlkTypeIn, 0, {{kData, 512, true}});
  const uint16_t second = write_request(3, kBlkTypeIn, 1, {{kData + 0x1000, 512, true}});
  driver.publish(first);
  driver.publish(second);
  device->notify(0);
  EXPECT_EQ(io->ops.size(), 1u);  // the second is held, not submitted
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
  EXPECT_THAT(device->debug_state(), ::testing::HasSubstr("waiting for its rate limit"));
  // A notification meanwhile neither starts it nor counts another wait.
  device->notify(0);
  EXPECT_EQ(io->ops.size(), 1u);
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
  loop.run_once(0);  // the first one's completion
  ASSERT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(driver.used(0).id, first);
  EXPECT_EQ(status(second), 0xff);
  run_until_used(2);  // the limit's timer fires
  EXPECT_EQ(driver.used(1).id, second);
  EXPECT_EQ(status(second), kBlkStatusOk);
  EXPECT_EQ(guest(kData + 0x1000, 512), expected_pattern(512, 512));
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
}

TEST_F(VirtioBlockTest, TheBytesLimitCountsTheDataOfReadsAndWrites) {
  start(BlockOptions{.rate_limit = {.bytes_per_second = 20 * 1024, .bytes_burst = 1024}});
  // A flush moves no data: it goes whatever the bytes bucket holds.
  const uint16_t read = write_request(0, kBlkTypeIn, 0, {{kData, 1024, true}});
  const uint16_t flush = write_request(3, kBlkTypeFlush, 0, {});
  const uint16_t write = write_request(5, kBlkTypeOut, 4, {{kData + 0x1000, 512, false}});
  driver.publish(read);
  driver.publish(flush);
  driver.publish(write);
  device->notify(0);
  EXPECT_THAT(io->ops, ElementsAre(IoRequest::Op::kRead, IoRequest::Op::kFlush));
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
  run_until_used(3);
  EXPECT_EQ(driver.used(2).id, write);
  EXPECT_EQ(status(write), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, ARequestLargerThanTheBurstStillGoes) {
  start(BlockOptions{.rate_limit = {.bytes_per_second = 100 * 1024, .bytes_burst = 512}});
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 4096, true}}), kBlkStatusOk);
  // It left a debt: the next one waits until it is paid back (40 ms), then goes.
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
}

TEST_F(VirtioBlockTest, ALiveChangeOfTheLimitStartsAWaitingRequestAtOnce) {
  start(BlockOptions{.rate_limit = {.ops_per_second = 1, .ops_burst = 1}});  // a 1 s wait
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  const uint16_t second = write_request(3, kBlkTypeIn, 1, {{kData, 512, true}});
  publish(second);
  EXPECT_EQ(status(second), 0xff);
  device->set_rate_limit({});
  const auto began = std::chrono::steady_clock::now();
  run_until_used(2);
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(500));
  EXPECT_EQ(status(second), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, AResetGivesUpTheRequestWaitingForTheLimit) {
  start(BlockOptions{.rate_limit = kOnePerFiftyMs});
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  publish(write_request(3, kBlkTypeIn, 1, {{kData + 0x1000, 512, true}}));
  bool reset_done = false;
  device->reset([&] { reset_done = true; });
  EXPECT_TRUE(reset_done);
  for (int i = 0; i < 3; ++i) loop.run_once(40);  // past the timer's 50 ms: nothing fires
  EXPECT_EQ(driver.used_idx(), 1);
  EXPECT_EQ(io->ops.size(), 1u);
}

// ---- Snapshot and restore ----

using std::chrono::steady_clock;

// A block device of a restored machine: a copy of the snapshot's RAM, its own queue and loop, on
// the same image.
struct RestoredBlock {
  RestoredBlock(const std::vector<uint8_t>& snapshot_ram, int image_fd) : ram(snapshot_ram) {
    auto fake = std::make_unique<FakeIo>(image_fd);
    io = fake.get();
    device.emplace(ram.memory, loop, kDiskSize, std::move(fake), BlockOptions{}, "vda");
  }
  void restore(const std::vector<uint8_t>& bytes, uint64_t features) {
    testing::restore_device(bytes, Activation{features, {&queue}, &interrupt}, *device);
    driver.set_avail_idx(*ram.memory.read_obj<uint16_t>(queue.config().avail_ring + 2));
  }

  testing::RestoredRam ram;
  EventLoop loop;
  SplitQueue queue{ram.memory, VirtioBlock::kQueueSize};
  Driver driver{ram.memory, testing::queue_config(0, VirtioBlock::kQueueSize)};
  testing::FakeDeviceInterrupt interrupt;
  FakeIo* io = nullptr;
  std::optional<VirtioBlock> device;
};

TEST_P(VirtioBlockEngineTest, QuiesceCompletesTheRequestsInFlightAndTheRestoreCarriesOn) {
  image.emplace(kDiskSize);
  device.emplace(memory, loop, kDiskSize,
                 AsyncIo::create(image->fd(), VirtioBlock::kQueueSize, GetParam()), BlockOptions{},
                 "vda");
  // Write-through: each write has a second stage, its fdatasync, that quiesce must see to.
  const uint64_t features = device->features() & ~kBlkFeatureFlush;
  activate(features, /*event_idx=*/true);
  fill_guest(kData, 2048, 0x33);
  const uint16_t write = write_request(0, kBlkTypeOut, 8, {{kData, 2048, false}});
  const uint16_t read = write_request(3, kBlkTypeIn, 0, {{kData + 0x1000, 1024, true}});
  const uint16_t later = write_request(6, kBlkTypeIn, 2, {{kData + 0x2000, 512, true}});
  const uint16_t next = write_request(9, kBlkTypeIn, 8, {{kData + 0x3000, 1024, true}});
  driver.publish(write);
  driver.publish(read);
  device->notify(0);      // submitted; the loop, paused, reaps nothing
  driver.publish(later);  // made available while paused: quiesce does not start it
  EXPECT_THROW(testing::save_device({&queue}, *device), Error);
  ASSERT_EQ(driver.used_idx(), 0);

  device->quiesce(steady_clock::now() + std::chrono::seconds(10));
  ASSERT_EQ(driver.used_idx(), 2);
  EXPECT_EQ(status(write), kBlkStatusOk);
  EXPECT_EQ(status(read), kBlkStatusOk);
  EXPECT_EQ(status(later), 0xff);
  EXPECT_EQ(interrupt.used, 1);
  EXPECT_EQ(image->read(8 * 512, 2048), std::vector<uint8_t>(2048, 0x33));
  EXPECT_EQ(guest(kData + 0x1000, 1024), expected_pattern(0, 1024));
  const std::vector<uint8_t> bytes = testing::save_device({&queue}, *device);

  // Both find the request made available meanwhile (the old one through its resume eventfd, the
  // restored one notified as its transport does), then serve the next one alike.
  RestoredBlock restored(ram, image->fd());
  restored.restore(bytes, features);
  driver.set_used_event(2);  // both owe the driver an interrupt for what comes next
  restored.driver.set_used_event(2);
  restored.device->notify(0);
  restored.driver.publish(next);
  restored.device->notify(0);
  for (int i = 0; i < 50 && restored.driver.used_idx() < 4; ++i) restored.loop.run_once(100);
  run_until_used(3);
  driver.publish(next);
  device->notify(0);
  run_until_used(4);
  ASSERT_EQ(restored.driver.used_idx(), 4);
  for (uint16_t i = 2; i < 4; ++i) {
    EXPECT_EQ(restored.driver.used(i).id, driver.used(i).id);
    EXPECT_EQ(restored.driver.used(i).len, driver.used(i).len);
  }
  EXPECT_EQ(status(next), kBlkStatusOk);
  EXPECT_EQ(guest(kData + 0x3000, 1024), std::vector<uint8_t>(1024, 0x33));
  const auto requests = [](const std::vector<uint8_t>& bytes) {
    return std::vector<uint8_t>(bytes.begin() + kStatus, bytes.begin() + kData + 0x4000);
  };
  EXPECT_EQ(requests(restored.ram.ram), requests(ram));
  EXPECT_EQ(interrupt.used, 2);
  EXPECT_EQ(restored.interrupt.used, 1);
}

TEST_F(VirtioBlockTest, ARequestWaitingForTheLimitIsSavedAndTheRestoredDeviceStartsIt) {
  start(BlockOptions{.rate_limit = {.ops_per_second = 1, .ops_burst = 1}});
  EXPECT_EQ(execute(kBlkTypeIn, 0, {{kData, 512, true}}), kBlkStatusOk);
  const uint16_t waiting = write_request(3, kBlkTypeIn, 1, {{kData + 0x1000, 512, true}});
  publish(waiting);
  device->quiesce(steady_clock::now() + std::chrono::seconds(1));
  const std::vector<uint8_t> bytes = testing::save_device({&queue}, *device);
  // The restored device (unlimited: the limit's state is not saved) starts the held chain.
  RestoredBlock restored(ram, image->fd());
  restored.restore(bytes, device->features());
  for (int i = 0; i < 50 && restored.driver.used_idx() < 2; ++i) restored.loop.run_once(100);
  ASSERT_EQ(restored.driver.used_idx(), 2);
  EXPECT_EQ(restored.driver.used(1).id, waiting);
  EXPECT_EQ(*restored.ram.memory.read_obj<uint8_t>(status_gpa(waiting)), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, QuiesceGivesUpOnADiskThatDoesNotAnswer) {
  start();
  io->hold = true;
  publish(write_request(0, kBlkTypeIn, 0, {{kData, 512, true}}));
  ASSERT_EQ(io->started.size(), 1u);
  const auto began = steady_clock::now();
  EXPECT_THAT([&] { device->quiesce(began + std::chrono::milliseconds(50)); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr(
                  "virtio-blk vda: 1 request(s) still in flight when the wait for them ran out")));
  EXPECT_GE(steady_clock::now() - began, std::chrono::milliseconds(50));
  // The device carries on once the machine resumes: the request completes as usual.
  io->finish_all();
  run_until_used(1);
  EXPECT_EQ(status(0), kBlkStatusOk);
}

TEST_F(VirtioBlockTest, QuiesceFinishesAResetWaitingForItsIo) {
  start();
  io->hold = true;
  publish(write_request(0, kBlkTypeIn, 0, {{kData, 512, true}}));
  bool reset_done = false;
  device->reset([&] { reset_done = true; });
  EXPECT_FALSE(reset_done);
  io->hold = false;
  io->finish_all();
  device->quiesce(steady_clock::now() + std::chrono::seconds(10));
  EXPECT_TRUE(reset_done);
  EXPECT_EQ(driver.used_idx(), 0);  // the chain was given up
}

TEST_F(VirtioBlockTest, ARestoreRefusesAQueueWithChainsInUseThatTheDeviceDoesNotHold) {
  start();
  io->hold = true;
  publish(write_request(0, kBlkTypeIn, 0, {{kData, 512, true}}));
  // As a snapshot that skipped quiesce would have it: the queue has a chain in use.
  StateWriter out;
  queue.save_state(out);
  StateWriter own;
  SplitQueue::save_chains(own, {});  // the device holds nothing
  out.put_bytes(own.bytes());
  const std::vector<uint8_t> bytes = out.take();
  RestoredBlock restored(ram, image->fd());
  EXPECT_THAT([&] { restored.restore(bytes, device->features()); },
              ::testing::ThrowsMessage<Error>(
                  ::testing::HasSubstr("device: corrupt state: the device holds 0 chain(s)")));
  io->finish_all();
  run_until_used(1);
}

TEST_F(VirtioBlockTest, ATruncatedStateIsRefused) {
  start();
  const std::vector<uint8_t> bytes = testing::save_device({&queue}, *device);
  for (size_t size = 0; size < bytes.size(); ++size) {
    RestoredBlock restored(ram, image->fd());
    EXPECT_THROW(restored.restore({bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)},
                                  device->features()),
                 Error)
        << size;
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, VirtioBlockEngineTest,
                         ::testing::Values(AsyncIo::Engine::kAuto, AsyncIo::Engine::kThreadPool),
                         [](const ::testing::TestParamInfo<AsyncIo::Engine>& info) {
                           return info.param == AsyncIo::Engine::kAuto ? "Auto" : "ThreadPool";
                         });

}  // namespace
}  // namespace vmm::devices::virtio
