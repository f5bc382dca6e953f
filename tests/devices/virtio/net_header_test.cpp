#include "devices/virtio/net_header.hpp"

#include <gtest/gtest.h>
#include <linux/if_tun.h>

#include <cstddef>

namespace vmm::devices::virtio {
namespace {

constexpr uint64_t kAllGuestOffloads = kNetFeatureGuestCsum | kNetFeatureGuestTso4 |
                                       kNetFeatureGuestTso6 | kNetFeatureGuestEcn |
                                       kNetFeatureGuestUfo;

TEST(VirtioNetHeaderTest, LayoutIsVirtioNetHdrV1) {
  EXPECT_EQ(offsetof(VirtioNetHdr, gso_type), 1u);
  EXPECT_EQ(offsetof(VirtioNetHdr, hdr_len), 2u);
  EXPECT_EQ(offsetof(VirtioNetHdr, csum_start), 6u);
  EXPECT_EQ(offsetof(VirtioNetHdr, num_buffers), kNetHdrNumBuffersOffset);
  EXPECT_EQ(kNetMaxPacket, 65562u);
}

TEST(VirtioNetHeaderTest, OffloadFlagsFollowTheGuestFeatures) {
  EXPECT_EQ(tun_offload_flags(0), 0u);
  // Host (transmit) offloads are the guest's business, not the tap's receive side.
  EXPECT_EQ(tun_offload_flags(kNetFeatureCsum | kNetFeatureHostTso4 | kNetFeatureHostUfo), 0u);
  EXPECT_EQ(tun_offload_flags(kNetFeatureGuestCsum), unsigned{TUN_F_CSUM});
  EXPECT_EQ(tun_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestTso4),
            unsigned{TUN_F_CSUM | TUN_F_TSO4});
  EXPECT_EQ(tun_offload_flags(kAllGuestOffloads),
            unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO});
}

TEST(VirtioNetHeaderTest, OffloadFlagsNeverAskTunForWhatItRefuses) {
  // tun: TSO and UFO need CSUM, ECN needs TSO.
  EXPECT_EQ(tun_offload_flags(kAllGuestOffloads & ~kNetFeatureGuestCsum), 0u);
  EXPECT_EQ(tun_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestEcn), unsigned{TUN_F_CSUM});
  EXPECT_EQ(tun_offload_flags(kNetFeatureGuestCsum | kNetFeatureGuestUfo | kNetFeatureGuestEcn),
            unsigned{TUN_F_CSUM | TUN_F_UFO});
}

TEST(VirtioNetHeaderTest, PlainPacketsFitAnyDriver) {
  VirtioNetHdr header{};
  EXPECT_TRUE(fit_rx_header(header, 0));
  header.flags = kNetHdrFDataValid;
  EXPECT_TRUE(fit_rx_header(header, 0));
  EXPECT_EQ(header.flags, 0);  // must be zero without GUEST_CSUM
  header.flags = kNetHdrFDataValid;
  EXPECT_TRUE(fit_rx_header(header, kNetFeatureGuestCsum));
  EXPECT_EQ(header.flags, kNetHdrFDataValid);
}

TEST(VirtioNetHeaderTest, PartialChecksumsNeedGuestCsum) {
  VirtioNetHdr header{.flags = kNetHdrFNeedsCsum, .csum_start = 34, .csum_offset = 16};
  EXPECT_FALSE(fit_rx_header(header, 0));
  EXPECT_TRUE(fit_rx_header(header, kNetFeatureGuestCsum));
  EXPECT_EQ(header.flags, kNetHdrFNeedsCsum);
  EXPECT_EQ(header.csum_start, 34);
}

TEST(VirtioNetHeaderTest, GsoTypesNeedTheirFeature) {
  struct Case {
    uint8_t gso_type;
    uint64_t feature;
  };
  for (const Case& c :
       {Case{kNetHdrGsoTcpv4, kNetFeatureGuestTso4}, Case{kNetHdrGsoTcpv6, kNetFeatureGuestTso6},
        Case{kNetHdrGsoUdp, kNetFeatureGuestUfo}}) {
    VirtioNetHdr header{.flags = kNetHdrFNeedsCsum, .gso_type = c.gso_type, .gso_size = 1448};
    EXPECT_FALSE(fit_rx_header(header, kAllGuestOffloads & ~c.feature)) << int{c.gso_type};
    EXPECT_TRUE(fit_rx_header(header, kNetFeatureGuestCsum | c.feature)) << int{c.gso_type};
  }
  VirtioNetHdr ecn{.flags = kNetHdrFNeedsCsum, .gso_type = kNetHdrGsoTcpv4 | kNetHdrGsoEcn};
  EXPECT_FALSE(fit_rx_header(ecn, kNetFeatureGuestCsum | kNetFeatureGuestTso4));
  EXPECT_TRUE(fit_rx_header(ecn, kAllGuestOffloads));
  VirtioNetHdr unknown{.gso_type = 5};  // UDP_L4 (USO): not offered
  EXPECT_FALSE(fit_rx_header(unknown, kAllGuestOffloads));
  VirtioNetHdr ecn_alone{.gso_type = kNetHdrGsoEcn};
  EXPECT_FALSE(fit_rx_header(ecn_alone, kAllGuestOffloads));
}

}  // namespace
}  // namespace vmm::devices::virtio
