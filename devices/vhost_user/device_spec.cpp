#include "devices/vhost_user/device_spec.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/util/error.hpp"
#include "devices/virtio/virtio_device.hpp"

namespace vmm::devices::vhost_user {

namespace {

// struct virtio_fs_config (virtio 1.2, 5.11.4).
constexpr size_t kFsTagBytes = 36;
struct FsConfig {
  char tag[kFsTagBytes];  // NUL-padded, not NUL-terminated when 36 bytes long
  uint32_t num_request_queues;
};
static_assert(sizeof(FsConfig) == 40);

// The FUSE headers (linux/fuse.h) as far as a failed request needs them.
constexpr uint64_t kFuseUniqueOffset = 8;  // fuse_in_header: len, opcode, unique, ...
struct FuseOutHeader {
  uint32_t len;
  int32_t error;
  uint64_t unique;
};
static_assert(sizeof(FuseOutHeader) == 16);

// The queue sizes libvhost-user (Debian's C virtiofsd) and the Rust virtiofsd both accept.
constexpr uint16_t kFsQueueSize = 1024;
constexpr uint16_t kBlkQueueSize = 256;
// A request queue per vCPU is plenty; more only costs shadow rings.
constexpr uint16_t kMaxFsRequestQueues = 64;

// virtio-blk (virtio 1.2, 5.2.3, 5.2.4): the feature bits a backend may offer that vmm passes on,
// and struct virtio_blk_config up to write_zeroes_may_unmap and its padding.
constexpr uint64_t kBlkFeatures = (uint64_t{1} << 1) |   // SIZE_MAX
                                  (uint64_t{1} << 2) |   // SEG_MAX
                                  (uint64_t{1} << 4) |   // GEOMETRY
                                  (uint64_t{1} << 5) |   // RO
                                  (uint64_t{1} << 6) |   // BLK_SIZE
                                  (uint64_t{1} << 9) |   // FLUSH
                                  (uint64_t{1} << 10) |  // TOPOLOGY
                                  (uint64_t{1} << 11) |  // CONFIG_WCE
                                  (uint64_t{1} << 12) |  // MQ
                                  (uint64_t{1} << 13) |  // DISCARD
                                  (uint64_t{1} << 14);   // WRITE_ZEROES
constexpr uint32_t kBlkConfigSize = 60;
constexpr uint8_t kBlkStatusIoErr = 1;

uint32_t fail_fuse_request(const virtio::DescriptorChain& chain) {
  FuseOutHeader reply{.len = sizeof(FuseOutHeader), .error = -EIO, .unique = 0};
  // A request too short for its header gets unique 0, which the driver matches with nothing.
  chain.read(kFuseUniqueOffset, {reinterpret_cast<uint8_t*>(&reply.unique), sizeof(reply.unique)});
  // FORGET and BATCH_FORGET expect no reply: they have no writable part.
  if (chain.writable_bytes() < sizeof(reply)) return 0;
  chain.write(0, {reinterpret_cast<const uint8_t*>(&reply), sizeof(reply)});
  return sizeof(reply);
}

uint32_t fail_blk_request(const virtio::DescriptorChain& chain) {
  const uint32_t writable = chain.writable_bytes();
  if (writable == 0) return 0;
  chain.write(writable - 1, {&kBlkStatusIoErr, 1});
  // The status byte ends the writable part, so the part written through is all of it.
  return writable;
}

}  // namespace

DeviceSpec fs_device_spec(const std::string& tag, uint16_t request_queues) {
  if (tag.empty() || tag.size() > kFsTagBytes) {
    fail("virtio-fs tag '{}': {} bytes, must be 1 to {}", tag, tag.size(), kFsTagBytes);
  }
  if (request_queues == 0 || request_queues > kMaxFsRequestQueues) {
    fail("virtio-fs tag '{}': {} request queues, must be 1 to {}", tag, request_queues,
         kMaxFsRequestQueues);
  }
  FsConfig config{};
  std::copy(tag.begin(), tag.end(), config.tag);
  config.num_request_queues = request_queues;
  const auto* bytes = reinterpret_cast<const uint8_t*>(&config);
  return DeviceSpec{.device_id = kDeviceIdFs,
                    .queue_count = static_cast<uint16_t>(1 + request_queues),  // hiprio first
                    .queue_size = kFsQueueSize,
                    .config = std::vector<uint8_t>(bytes, bytes + sizeof(config)),
                    .device_features = 0,  // VIRTIO_FS_F_NOTIFICATION needs a queue vmm lacks
                    .fail_request = fail_fuse_request};
}

DeviceSpec blk_device_spec() {
  return DeviceSpec{.device_id = virtio::kDeviceIdBlock,
                    .queue_count = 1,
                    .queue_size = kBlkQueueSize,
                    .config = {},
                    .config_size = kBlkConfigSize,
                    .device_features = kBlkFeatures,
                    .fail_request = fail_blk_request};
}

}  // namespace vmm::devices::vhost_user
