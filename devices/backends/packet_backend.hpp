#pragma once

#include <string>

namespace vmm::devices {

// The host side of a network device: a non-blocking packet fd where one read returns one packet
// and one write sends one, each packet prefixed by a 12-byte virtio_net_hdr_v1 (a tap with
// IFF_VNET_HDR and TUNSETVNETHDRSZ 12; a SOCK_SEQPACKET socket in tests).
class PacketBackend {
 public:
  virtual ~PacketBackend() = default;
  virtual int fd() const = 0;
  // For logs and errors: "tap0".
  virtual const std::string& name() const = 0;
  // The offloads the guest accepts (TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_UFO
  // from <linux/if_tun.h>): which packets the backend may hand us without checksum or segmented.
  // Throws vmm::Error if the backend refuses them.
  virtual void set_offload(unsigned tun_flags) = 0;
};

}  // namespace vmm::devices
