#include "devices/vhost_user/device_spec.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "devices/virtio/queue.hpp"
#include "devices/virtio/virtio_device.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::vhost_user {
namespace {

using virtio::kVirtqDescFNext;
using virtio::kVirtqDescFWrite;
using virtio::SplitQueue;
using virtio::testing::Driver;

constexpr uint64_t kIn = 0x20000;
constexpr uint64_t kOut = 0x30000;

// One queue on 1 MiB of RAM, the driver's buffers at kIn (readable) and kOut (writable).
struct OneQueue {
  std::vector<uint8_t> ram = std::vector<uint8_t>(1 << 20);
  GuestMemory memory = GuestMemory::from_regions({{0, ram.size(), ram.data()}});
  SplitQueue queue{memory, 16};
  Driver driver{memory, virtio::testing::queue_config(0, 16)};

  OneQueue() { virtio::testing::activate_queue(queue, driver, 0, false); }

  // A chain of `readable` bytes (filled from `request`) then `writable` bytes, popped.
  virtio::DescriptorChain pop(const std::vector<uint8_t>& request, uint32_t writable) {
    EXPECT_TRUE(memory.write(kIn, request));
    if (writable == 0) {
      driver.desc(0, kIn, static_cast<uint32_t>(request.size()));
    } else {
      driver.desc(0, kIn, static_cast<uint32_t>(request.size()), kVirtqDescFNext, 1);
      driver.desc(1, kOut, writable, kVirtqDescFWrite);
    }
    driver.publish(0);
    return *queue.pop();
  }
};

TEST(FsDeviceSpecTest, ConfigHoldsTheTagAndTheRequestQueues) {
  const DeviceSpec spec = fs_device_spec("docs", 2);
  EXPECT_EQ(spec.device_id, kDeviceIdFs);
  EXPECT_EQ(spec.queue_count, 3);  // hiprio and two request queues
  ASSERT_EQ(spec.config.size(), 40u);
  EXPECT_EQ(std::string(spec.config.begin(), spec.config.begin() + 5), std::string("docs\0", 5));
  uint32_t request_queues;
  std::memcpy(&request_queues, spec.config.data() + 36, 4);
  EXPECT_EQ(request_queues, 2u);
}

TEST(FsDeviceSpecTest, TagOf36BytesFillsTheField) {
  const DeviceSpec spec = fs_device_spec(std::string(36, 't'), 1);
  EXPECT_EQ(std::string(spec.config.begin(), spec.config.begin() + 36), std::string(36, 't'));
}

TEST(FsDeviceSpecTest, RefusesBadTagsAndQueueCounts) {
  EXPECT_THROW(fs_device_spec("", 1), Error);
  EXPECT_THROW(fs_device_spec(std::string(37, 't'), 1), Error);
  EXPECT_THROW(fs_device_spec("docs", 0), Error);
  try {
    fs_device_spec(std::string(37, 't'), 1);
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("37 bytes"), std::string::npos) << error.what();
  }
}

TEST(FsDeviceSpecTest, FailedRequestGetsEioWithItsUnique) {
  OneQueue q;
  std::vector<uint8_t> request(40);  // fuse_in_header
  const uint64_t unique = 0x1122334455667788;
  std::memcpy(request.data() + 8, &unique, 8);
  auto chain = q.pop(request, 256);
  EXPECT_EQ(fs_device_spec("docs", 1).fail_request(chain), 16u);
  struct {
    uint32_t len;
    int32_t error;
    uint64_t unique;
  } reply{};
  ASSERT_TRUE(q.memory.read(kOut, {reinterpret_cast<uint8_t*>(&reply), sizeof(reply)}));
  EXPECT_EQ(reply.len, 16u);
  EXPECT_EQ(reply.error, -EIO);
  EXPECT_EQ(reply.unique, unique);
  q.queue.add_used(std::move(chain), 16);
}

TEST(FsDeviceSpecTest, ForgetHasNoReply) {
  OneQueue q;
  auto chain = q.pop(std::vector<uint8_t>(48), 0);
  EXPECT_EQ(fs_device_spec("docs", 1).fail_request(chain), 0u);
  q.queue.add_used(std::move(chain), 0);
}

TEST(BlkDeviceSpecTest, FailedRequestGetsIoErrInItsStatusByte) {
  OneQueue q;
  const DeviceSpec spec = blk_device_spec();
  EXPECT_EQ(spec.device_id, virtio::kDeviceIdBlock);
  EXPECT_TRUE(spec.config.empty());  // the backend's
  EXPECT_GT(spec.config_size, 0u);
  auto chain = q.pop(std::vector<uint8_t>(16), 513);
  EXPECT_EQ(spec.fail_request(chain), 513u);
  EXPECT_EQ(*q.memory.read_obj<uint8_t>(kOut + 512), 1);  // VIRTIO_BLK_S_IOERR
  q.queue.add_used(std::move(chain), 513);
}

}  // namespace
}  // namespace vmm::devices::vhost_user
