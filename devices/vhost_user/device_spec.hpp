#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "devices/virtio/descriptor_chain.hpp"

namespace vmm::devices::vhost_user {

// Device IDs (virtio 1.2, 5) of the device types vmm attaches through vhost-user.
inline constexpr uint32_t kDeviceIdFs = 26;

// What one type of vhost-user device is to the guest beyond what its backend says.
struct DeviceSpec {
  uint32_t device_id;  // virtio device ID: kDeviceIdFs, virtio::kDeviceIdBlock
  // The number of queues when vmm makes the config space itself (the backend must serve at least
  // that many), or when the backend does not offer MQ; otherwise the backend's GET_QUEUE_NUM.
  uint16_t queue_count;
  uint16_t queue_size;          // QueueNumMax offered to the driver, a power of two
  std::vector<uint8_t> config;  // the config space vmm makes itself; empty: GET_CONFIG
  uint32_t config_size = 0;     // the bytes GET_CONFIG asks for when `config` is empty
  uint64_t device_features;     // device-specific feature bits vmm lets through from the backend
  // Writes the device type's error into a chain the backend will never complete (it died) and
  // returns the bytes written, the used length.
  std::function<uint32_t(const virtio::DescriptorChain&)> fail_request;
};

// virtio-fs (virtio 1.2, 5.11): vmm's config space (the mount tag, 1 to 36 bytes, and the number
// of request queues, at least 1; else vmm::Error naming the tag or count), a hiprio queue and
// `request_queues` request queues. A failed request gets a fuse_out_header with -EIO.
DeviceSpec fs_device_spec(const std::string& tag, uint16_t request_queues);
// virtio-blk (virtio 1.2, 5.2): the backend's config space and queue count. A failed request gets
// VIRTIO_BLK_S_IOERR.
DeviceSpec blk_device_spec();

}  // namespace vmm::devices::vhost_user
