#include "devices/virtio/net_header.hpp"

#include <linux/if_tun.h>

namespace vmm::devices::virtio {

unsigned tun_offload_flags(uint64_t driver_features) {
  auto has = [&](uint64_t feature) { return (driver_features & feature) != 0; };
  if (!has(kNetFeatureGuestCsum)) return 0;
  unsigned flags = TUN_F_CSUM;
  if (has(kNetFeatureGuestTso4)) flags |= TUN_F_TSO4;
  if (has(kNetFeatureGuestTso6)) flags |= TUN_F_TSO6;
  if ((flags & (TUN_F_TSO4 | TUN_F_TSO6)) != 0 && has(kNetFeatureGuestEcn)) {
    flags |= TUN_F_TSO_ECN;
  }
  if (has(kNetFeatureGuestUfo)) flags |= TUN_F_UFO;
  return flags;
}

bool fit_rx_header(VirtioNetHdr& header, uint64_t driver_features) {
  auto has = [&](uint64_t feature) { return (driver_features & feature) != 0; };
  // Without GUEST_CSUM the flags must be zero (DATA_VALID is only a hint, so it can go).
  if (!has(kNetFeatureGuestCsum)) {
    if ((header.flags & kNetHdrFNeedsCsum) != 0) return false;
    header.flags = 0;
  } else {
    header.flags &= kNetHdrFNeedsCsum | kNetHdrFDataValid;  // RSC_INFO is not offered
  }
  if ((header.gso_type & kNetHdrGsoEcn) != 0 && !has(kNetFeatureGuestEcn)) return false;
  switch (header.gso_type & ~kNetHdrGsoEcn) {
    case kNetHdrGsoNone: return (header.gso_type & kNetHdrGsoEcn) == 0;
    case kNetHdrGsoTcpv4: return has(kNetFeatureGuestTso4);
    case kNetHdrGsoTcpv6: return has(kNetFeatureGuestTso6);
    case kNetHdrGsoUdp: return has(kNetFeatureGuestUfo);
    default: return false;  // USO and anything newer: not offered
  }
}

}  // namespace vmm::devices::virtio
