#pragma once

#include <cstdint>

namespace vmm::devices::virtio {

// virtio-net feature bits (virtio 1.2, 5.1.3).
inline constexpr uint64_t kNetFeatureCsum = uint64_t{1} << 0;
inline constexpr uint64_t kNetFeatureGuestCsum = uint64_t{1} << 1;
inline constexpr uint64_t kNetFeatureMac = uint64_t{1} << 5;
inline constexpr uint64_t kNetFeatureGuestTso4 = uint64_t{1} << 7;
inline constexpr uint64_t kNetFeatureGuestTso6 = uint64_t{1} << 8;
inline constexpr uint64_t kNetFeatureGuestEcn = uint64_t{1} << 9;
inline constexpr uint64_t kNetFeatureGuestUfo = uint64_t{1} << 10;
inline constexpr uint64_t kNetFeatureHostTso4 = uint64_t{1} << 11;
inline constexpr uint64_t kNetFeatureHostTso6 = uint64_t{1} << 12;
inline constexpr uint64_t kNetFeatureHostEcn = uint64_t{1} << 13;
inline constexpr uint64_t kNetFeatureHostUfo = uint64_t{1} << 14;
inline constexpr uint64_t kNetFeatureMrgRxbuf = uint64_t{1} << 15;
inline constexpr uint64_t kNetFeatureStatus = uint64_t{1} << 16;

// struct virtio_net_hdr_v1 (virtio 1.2, 5.1.6): the prefix of every packet on both queues, and
// the same layout as a tap's 12-byte vnet header. Little-endian like the x86 host.
struct VirtioNetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  uint16_t num_buffers = 0;
};
static_assert(sizeof(VirtioNetHdr) == 12);
inline constexpr uint32_t kNetHdrSize = sizeof(VirtioNetHdr);
inline constexpr uint32_t kNetHdrNumBuffersOffset = 10;

inline constexpr uint8_t kNetHdrFNeedsCsum = 1;
inline constexpr uint8_t kNetHdrFDataValid = 2;
inline constexpr uint8_t kNetHdrGsoNone = 0;
inline constexpr uint8_t kNetHdrGsoTcpv4 = 1;
inline constexpr uint8_t kNetHdrGsoUdp = 3;
inline constexpr uint8_t kNetHdrGsoTcpv6 = 4;
inline constexpr uint8_t kNetHdrGsoEcn = 0x80;

// The largest frame a driver must be able to receive or may send: a 64 KiB GSO packet with its
// Ethernet header (virtio 1.2, 5.1.6.3.1), plus the header.
inline constexpr uint32_t kNetMaxFrame = 65550;
inline constexpr uint32_t kNetMaxPacket = kNetMaxFrame + kNetHdrSize;

// The TUN_F_* offloads (<linux/if_tun.h>) matching the receive offloads the driver negotiated:
// the packets a tap may hand us unchecksummed or unsegmented. tun refuses TSO without CSUM and
// ECN without TSO (EINVAL), so those combinations contribute nothing.
unsigned tun_offload_flags(uint64_t driver_features);

// Makes a received packet's header fit what the driver negotiated: the flags a driver without
// GUEST_CSUM must see as zero are cleared. Returns false if the packet needs an offload the driver
// did not accept (a partial checksum, a GSO type): it must be dropped, not delivered. Such
// packets can still be queued in the backend from before a reset renegotiated the offloads.
bool fit_rx_header(VirtioNetHdr& header, uint64_t driver_features);

}  // namespace vmm::devices::virtio
