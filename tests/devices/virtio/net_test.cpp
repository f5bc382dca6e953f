#include "devices/virtio/net.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "tests/devices/fakes.hpp"
#include "tests/devices/virtio/device_state.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using testing::Driver;
using ::testing::ElementsAre;

constexpr uint64_t kRamSize = 4 << 20;
constexpr uint64_t kIndirect = 0xc000;  // past the two queues' rings (queue_config)
constexpr uint64_t kRxData = 0x100000;
constexpr uint64_t kTxData = 0x200000;
constexpr std::array<uint8_t, 6> kMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

constexpr uint64_t kAllFeatures =
    kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc | kNetFeatureMac |
    kNetFeatureStatus | kNetFeatureMrgRxbuf | kNetFeatureCsum | kNetFeatureGuestCsum |
    kNetFeatureGuestTso4 | kNetFeatureGuestTso6 | kNetFeatureGuestEcn | kNetFeatureGuestUfo |
    kNetFeatureHostTso4 | kNetFeatureHostTso6 | kNetFeatureHostEcn | kNetFeatureHostUfo;

using Packet = std::vector<uint8_t>;

// A header plus `size - 12` frame bytes that differ per `seed`. num_buffers holds garbage, as a
// tap leaves it (it writes only the first 10 bytes).
Packet make_packet(size_t size, uint8_t seed) {
  Packet packet(size);
  VirtioNetHdr header{};
  header.hdr_len = 54;
  header.num_buffers = 0xabcd;
  std::memcpy(packet.data(), &header, std::min(size, sizeof(header)));
  for (size_t i = kNetHdrSize; i < size; ++i) packet[i] = static_cast<uint8_t>(i * 13 + seed);
  return packet;
}

// What the driver should find: the packet with num_buffers set.
Packet with_num_buffers(Packet packet, uint16_t num_buffers) {
  std::memcpy(packet.data() + kNetHdrNumBuffersOffset, &num_buffers, 2);
  return packet;
}

// The next packet the device sent to the host's end `fd`, if there is one.
std::optional<Packet> receive_packet(int fd) {
  Packet packet(70000);
  const ssize_t n = recv(fd, packet.data(), packet.size(), MSG_DONTWAIT);
  if (n < 0) {
    EXPECT_EQ(errno, EAGAIN);
    return std::nullopt;
  }
  packet.resize(static_cast<size_t>(n));
  return packet;
}

struct BackendLog {
  std::vector<unsigned> offloads;
  bool refuse = false;
};

// One end of a SOCK_SEQPACKET socketpair: a packet fd like a tap's.
class FakeBackend final : public PacketBackend {
 public:
  FakeBackend(UniqueFd fd, BackendLog& log) : fd_(std::move(fd)), log_(log) {}
  int fd() const override { return fd_.get(); }
  const std::string& name() const override { return name_; }
  void set_offload(unsigned tun_flags) override {
    if (log_.refuse) fail("{}: TUNSETOFFLOAD: Invalid argument", name_);
    log_.offloads.push_back(tun_flags);
  }

 private:
  UniqueFd fd_;
  BackendLog& log_;
  std::string name_ = "fake0";
};

class VirtioNetTest : public ::testing::Test {
 protected:
  void SetUp() override { create(); }

  // `sndbuf`: the device end's SO_SNDBUF, to make writes block early.
  void create(std::optional<int> sndbuf = std::nullopt) {
    device.reset();
    auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
    peer = std::move(host_end);
    if (sndbuf) {
      ASSERT_EQ(setsockopt(device_end.get(), SOL_SOCKET, SO_SNDBUF, &*sndbuf, sizeof(*sndbuf)), 0);
    }
    device.emplace(memory, loop, std::make_unique<FakeBackend>(std::move(device_end), log), kMac,
                   "eth0 (fake0)");
  }

  void activate(uint64_t features) {
    const bool event_idx = (features & kFeatureRingEventIdx) != 0;
    testing::activate_queue(rx_queue, rx, 0, event_idx);
    testing::activate_queue(tx_queue, tx, 1, event_idx);
    device->activate(Activation{features, {&rx_queue, &tx_queue}, &interrupt});
  }

  // Writes `packet` at `gpa` and describes it with descriptors first, first+1, ... of the sizes
  // in `split` (their sum is the packet's size). Returns the head.
  uint16_t tx_chain(uint16_t first, uint64_t gpa, const Packet& packet,
                    const std::vector<uint32_t>& split) {
    EXPECT_TRUE(memory.write(gpa, packet));
    uint64_t offset = 0;
    for (size_t i = 0; i < split.size(); ++i) {
      const bool last = i + 1 == split.size();
      const auto index = static_cast<uint16_t>(first + i);
      tx.desc(index, gpa + offset, split[i], last ? 0 : kVirtqDescFNext,
              static_cast<uint16_t>(index + 1));
      offset += split[i];
    }
    return first;
  }
  void transmit(uint16_t head) {
    tx.publish(head);
    device->notify(1);
  }

  // One device-writable descriptor of `len` bytes at `gpa`, made available as chain `index`.
  void post_rx(uint16_t index, uint64_t gpa, uint32_t len) {
    rx.desc(index, gpa, len, kVirtqDescFWrite);
    rx.publish(index);
  }

  void host_send(const Packet& packet) {
    ASSERT_EQ(send(peer.get(), packet.data(), packet.size(), MSG_DONTWAIT),
              static_cast<ssize_t>(packet.size()));
  }
  std::optional<Packet> host_receive() { return receive_packet(peer.get()); }

  Packet guest(uint64_t gpa, uint64_t size) const {
    Packet bytes(size);
    EXPECT_TRUE(memory.read(gpa, bytes));
    return bytes;
  }
  // How many handlers one round of the loop calls that doesn't wait: none when the device does
  // not watch a ready fd (epoll is level-triggered: a watched ready fd is dispatched every round).
  uint64_t idle_round() {
    const uint64_t before = loop.dispatched();
    loop.run_once(0);
    return loop.dispatched() - before;
  }

  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  EventLoop loop;
  SplitQueue rx_queue{memory, VirtioNet::kQueueSize};
  SplitQueue tx_queue{memory, VirtioNet::kQueueSize};
  Driver rx{memory, testing::queue_config(0, VirtioNet::kQueueSize)};
  Driver tx{memory, testing::queue_config(1, VirtioNet::kQueueSize)};
  testing::FakeDeviceInterrupt interrupt;
  BackendLog log;
  UniqueFd peer;
  std::optional<VirtioNet> device;
};

TEST_F(VirtioNetTest, OffersTheNetFeaturesAndTwoQueues) {
  EXPECT_EQ(device->device_id(), kDeviceIdNet);
  EXPECT_EQ(device->features(), kAllFeatures);
  EXPECT_THAT(device->queue_max_sizes(), ElementsAre(256, 256));
}

TEST_F(VirtioNetTest, ConfigSpaceHoldsTheMacAndLinkUp) {
  std::array<uint8_t, 6> mac{};
  device->read_config(0, mac);
  EXPECT_EQ(mac, kMac);
  uint16_t status = 0;
  device->read_config(6, {reinterpret_cast<uint8_t*>(&status), 2});
  EXPECT_EQ(status, kNetStatusLinkUp);
  uint8_t byte = 0xff;
  device->read_config(3, {&byte, 1});
  EXPECT_EQ(byte, 0x12);
  // max_virtqueue_pairs, mtu and the rest: not offered, read 0; reads straddling the end too.
  std::array<uint8_t, 8> rest{};
  rest.fill(0xff);
  device->read_config(8, rest);
  EXPECT_THAT(rest, ::testing::Each(0));
  std::array<uint8_t, 4> straddle{};
  device->read_config(6, straddle);
  EXPECT_THAT(straddle, ElementsAre(1, 0, 0, 0));
}

TEST_F(VirtioNetTest, TransmitsASingleDescriptorPacket) {
  activate(kAllFeatures);
  Packet packet = make_packet(100, 1);
  packet[0] = kNetHdrFNeedsCsum;  // the header passes through unchanged
  packet[1] = kNetHdrGsoTcpv4;
  transmit(tx_chain(0, kTxData, packet, {100}));
  EXPECT_EQ(host_receive(), packet);
  EXPECT_EQ(host_receive(), std::nullopt);
  ASSERT_EQ(tx.used_idx(), 1);
  EXPECT_EQ(tx.used(0).id, 0u);
  EXPECT_EQ(tx.used(0).len, 0u);
  EXPECT_EQ(interrupt.used, 1);
  EXPECT_EQ(device->counters().tx_packets, 1u);
  EXPECT_EQ(device->metrics().requests, 1u);
  EXPECT_EQ(device->metrics().bytes, 100u - kNetHdrSize);  // the frame
}

TEST_F(VirtioNetTest, TransmitsAMultiDescriptorPacketAsOnePacket) {
  activate(kAllFeatures);
  const Packet first = make_packet(3000, 2);
  transmit(tx_chain(0, kTxData, first, {12, 1000, 1988}));
  // Through an indirect table too, split inside the header.
  const Packet second = make_packet(5000, 3);
  ASSERT_TRUE(memory.write(kTxData + 0x10000, second));
  tx.desc_at(kIndirect, 0, kTxData + 0x10000, 6, kVirtqDescFNext, 1);
  tx.desc_at(kIndirect, 1, kTxData + 0x10000 + 6, 4994);
  tx.desc(5, kIndirect, 32, kVirtqDescFIndirect);
  transmit(5);
  EXPECT_EQ(host_receive(), first);
  EXPECT_EQ(host_receive(), second);
  ASSERT_EQ(tx.used_idx(), 2);
  EXPECT_EQ(tx.used(1).id, 5u);
}

TEST_F(VirtioNetTest, DropsMalformedTransmitChainsAndKeepsWorking) {
  activate(kAllFeatures);
  const Packet good = make_packet(200, 4);
  tx_chain(0, kTxData, make_packet(8, 5), {8});  // shorter than the header
  tx.publish(0);
  tx_chain(1, kTxData + 0x1000, make_packet(200, 6), {12, 188});  // a device-writable part
  tx.desc(2, kTxData + 0x1000 + 12, 188, kVirtqDescFWrite);
  tx.publish(1);
  tx.desc(3, kTxData + 0x2000, kNetMaxPacket + 1);  // longer than any frame
  tx.publish(3);
  transmit(tx_chain(4, kTxData + 0x30000, good, {200}));
  EXPECT_EQ(host_receive(), good);
  EXPECT_EQ(host_receive(), std::nullopt);
  ASSERT_EQ(tx.used_idx(), 4);
  for (uint16_t i = 0; i < 4; ++i) EXPECT_EQ(tx.used(i).len, 0u);
  EXPECT_EQ(tx.used(3).id, 4u);
  EXPECT_EQ(device->counters().tx_dropped, 3u);
  EXPECT_EQ(device->counters().of(NetError::kTxShortHeader), 1u);
  EXPECT_EQ(device->counters().of(NetError::kTxDeviceWritable), 1u);
  EXPECT_EQ(device->counters().of(NetError::kTxTooLong), 1u);
  EXPECT_EQ(device->counters().tx_packets, 1u);
  EXPECT_EQ(device->metrics().errors, 3u);
  EXPECT_EQ(device->metrics().requests, 1u);
  EXPECT_EQ(interrupt.needs_reset, 0);
  // A packet of exactly the largest size still goes.
  const Packet biggest = make_packet(kNetMaxPacket, 7);
  transmit(tx_chain(5, kTxData + 0x100000, biggest, {kNetMaxPacket}));
  EXPECT_EQ(host_receive(), biggest);
}

TEST_F(VirtioNetTest, TransmitResumesWhenTheBackendIsWritableInOrder) {
  create(/*sndbuf=*/4096);
  activate(kAllFeatures);
  constexpr uint16_t kCount = 64;
  std::vector<Packet> sent;
  for (uint16_t i = 0; i < kCount; ++i) {
    sent.push_back(make_packet(1500, static_cast<uint8_t>(i)));
    tx.publish(tx_chain(static_cast<uint16_t>(3 * i), kTxData + 0x1000ull * i, sent.back(),
                        {12, static_cast<uint32_t>(1488 - i), uint32_t{i}}));
  }
  device->notify(1);
  ASSERT_LT(tx.used_idx(), kCount) << "the socket never filled up";

  // From here on only the loop drives the device: EPOLLOUT.
  std::vector<Packet> received;
  for (int round = 0; round < 200 && received.size() < kCount; ++round) {
    while (auto packet = host_receive()) received.push_back(std::move(*packet));
    loop.run_once(100);
  }
  ASSERT_EQ(received.size(), kCount);
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(tx.used_idx(), kCount);
  for (uint16_t i = 0; i < kCount; ++i) EXPECT_EQ(tx.used(i).id, 3u * i);
  EXPECT_EQ(device->counters().tx_dropped, 0u);
  // Nothing waits any more: the loop is idle.
  EXPECT_EQ(idle_round(), 0u);
}

TEST_F(VirtioNetTest, ReceivesIntoOneBigBuffer) {
  activate(kAllFeatures & ~kNetFeatureMrgRxbuf);
  post_rx(0, kRxData, kNetMaxPacket);
  const Packet packet = make_packet(1514 + 12, 8);
  host_send(packet);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used(0).id, 0u);
  EXPECT_EQ(rx.used(0).len, packet.size());
  EXPECT_EQ(guest(kRxData, packet.size()), with_num_buffers(packet, 1));
  EXPECT_EQ(interrupt.used, 1);
  EXPECT_EQ(device->counters().rx_packets, 1u);
  EXPECT_EQ(device->metrics().requests, 1u);
  EXPECT_EQ(device->metrics().bytes, 1514u);
}

TEST_F(VirtioNetTest, ReceivesIntoAChainOfDescriptors) {
  // Big-packet mode (no MRG_RXBUF): the header and the frame in separate descriptors.
  activate(kAllFeatures & ~kNetFeatureMrgRxbuf);
  rx.desc(0, kRxData, 12, kVirtqDescFWrite | kVirtqDescFNext, 1);
  rx.desc(1, kRxData + 0x1000, 4096, kVirtqDescFWrite | kVirtqDescFNext, 2);
  rx.desc(2, kRxData + 0x3000, 65536, kVirtqDescFWrite);
  rx.publish(0);
  const Packet packet = make_packet(kNetMaxPacket, 9);
  host_send(packet);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used(0).len, packet.size());
  const Packet expected = with_num_buffers(packet, 1);
  EXPECT_EQ(guest(kRxData, 12), Packet(expected.begin(), expected.begin() + 12));
  EXPECT_EQ(guest(kRxData + 0x1000, 4096), Packet(expected.begin() + 12, expected.begin() + 4108));
  EXPECT_EQ(guest(kRxData + 0x3000, packet.size() - 4108),
            Packet(expected.begin() + 4108, expected.end()));
}

TEST_F(VirtioNetTest, ReceivesMergeableAcrossThreeChains) {
  activate(kAllFeatures);
  const uint64_t addrs[] = {kRxData, kRxData + 0x10000, kRxData + 0x20000, kRxData + 0x30000};
  for (uint16_t i = 0; i < 4; ++i) post_rx(i, addrs[i], 1000);
  const Packet big = make_packet(2500, 10);
  const Packet small = make_packet(300, 11);
  host_send(big);
  host_send(small);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 4);
  const uint32_t lengths[] = {1000, 1000, 500, 300};
  for (uint16_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rx.used(i).id, i);
    EXPECT_EQ(rx.used(i).len, lengths[i]);
  }
  Packet joined;
  for (int i = 0; i < 3; ++i) {
    const Packet part = guest(addrs[i], lengths[i]);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(joined, with_num_buffers(big, 3));
  EXPECT_EQ(guest(addrs[3], 300), with_num_buffers(small, 1));
  EXPECT_EQ(interrupt.used, 1);  // one for the batch
  EXPECT_EQ(device->counters().rx_packets, 2u);
}

TEST_F(VirtioNetTest, DropsAPacketTooBigForOneBufferWithoutMergeable) {
  activate(kAllFeatures & ~kNetFeatureMrgRxbuf);
  post_rx(0, kRxData, 1000);
  host_send(make_packet(1500, 12));
  const Packet next = make_packet(500, 13);
  host_send(next);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(rx.used(0).id, 0u);
  EXPECT_EQ(rx.used(0).len, 500u);
  EXPECT_EQ(guest(kRxData, 500), with_num_buffers(next, 1));
  EXPECT_EQ(device->counters().rx_dropped, 1u);
  EXPECT_EQ(device->counters().of(NetError::kRxDoesNotFit), 1u);
  EXPECT_EQ(device->counters().rx_packets, 1u);
  EXPECT_EQ(device->metrics().errors, 1u);  // the dropped packet
  EXPECT_EQ(device->metrics().requests, 1u);
}

TEST_F(VirtioNetTest, DropsPacketsWithOffloadsTheDriverRefused) {
  activate(kFeatureVersion1);  // no GUEST_CSUM, no GUEST_TSO4
  post_rx(0, kRxData, 2000);
  Packet gso = make_packet(1500, 14);
  gso[0] = kNetHdrFNeedsCsum;
  gso[1] = kNetHdrGsoTcpv4;
  host_send(gso);
  Packet valid = make_packet(600, 15);
  valid[0] = kNetHdrFDataValid;  // a hint a driver without GUEST_CSUM must not see
  host_send(valid);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 1);
  valid[0] = 0;
  EXPECT_EQ(guest(kRxData, 600), with_num_buffers(valid, 1));
  EXPECT_EQ(device->counters().rx_dropped, 1u);
  EXPECT_EQ(device->counters().of(NetError::kRxOffloadsRefused), 1u);
}

TEST_F(VirtioNetTest, ReturnsReceiveChainsTooSmallForAHeaderEmpty) {
  activate(kAllFeatures);
  post_rx(0, kRxData, 8);
  post_rx(1, kRxData + 0x1000, 2000);
  const Packet packet = make_packet(100, 16);
  host_send(packet);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(rx.used(0).id, 0u);
  EXPECT_EQ(rx.used(0).len, 0u);
  EXPECT_EQ(rx.used(1).id, 1u);
  EXPECT_EQ(guest(kRxData + 0x1000, 100), with_num_buffers(packet, 1));
  EXPECT_EQ(device->counters().rx_bad_buffers, 1u);
  EXPECT_EQ(device->counters().of(NetError::kRxChainTooSmall), 1u);
  EXPECT_EQ(interrupt.needs_reset, 0);
}

TEST_F(VirtioNetTest, APacketWaitsForBuffersWithoutSpinning) {
  activate(kAllFeatures);
  const Packet packet = make_packet(800, 17);
  host_send(packet);
  loop.run_once(100);  // finds no buffers: stops watching the fd
  EXPECT_EQ(idle_round(), 0u) << "the device spins on a readable fd";
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(device->counters().rx_dropped, 0u);

  post_rx(0, kRxData, 2000);
  device->notify(0);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(guest(kRxData, 800), with_num_buffers(packet, 1));
  EXPECT_EQ(interrupt.used, 1);
  // Watching again once the driver adds a buffer: the next packet comes through the loop.
  post_rx(1, kRxData + 0x1000, 2000);
  device->notify(0);
  host_send(make_packet(900, 18));
  loop.run_once(100);
  EXPECT_EQ(rx.used_idx(), 2);
}

TEST_F(VirtioNetTest, AMergeablePacketWaitsMidwayForMoreBuffers) {
  activate(kAllFeatures);
  post_rx(0, kRxData, 1000);
  const Packet packet = make_packet(2500, 19);
  host_send(packet);
  loop.run_once(100);
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(idle_round(), 0u) << "the device spins on a readable fd";

  post_rx(1, kRxData + 0x1000, 1000);
  device->notify(0);
  EXPECT_EQ(rx.used_idx(), 0);  // still short of room
  post_rx(2, kRxData + 0x2000, 1000);
  device->notify(0);
  ASSERT_EQ(rx.used_idx(), 3);
  const Packet expected = with_num_buffers(packet, 3);
  EXPECT_EQ(guest(kRxData, 1000), Packet(expected.begin(), expected.begin() + 1000));
  EXPECT_EQ(guest(kRxData + 0x1000, 1000),
            Packet(expected.begin() + 1000, expected.begin() + 2000));
  EXPECT_EQ(guest(kRxData + 0x2000, 500), Packet(expected.begin() + 2000, expected.end()));
  EXPECT_EQ(rx.used(2).len, 500u);
  EXPECT_EQ(device->counters().rx_dropped, 0u);
}

TEST_F(VirtioNetTest, SetsOffloadsToExactlyWhatTheDriverNegotiated) {
  activate(kFeatureVersion1);
  device->reset([] {});
  activate(kFeatureVersion1 | kNetFeatureGuestCsum | kNetFeatureCsum | kNetFeatureHostTso4);
  device->reset([] {});
  activate(kAllFeatures);
  device->reset([] {});
  EXPECT_THAT(
      log.offloads,
      ElementsAre(0u, 0u, unsigned{TUN_F_CSUM}, 0u,
                  unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UFO}, 0u));
}

TEST_F(VirtioNetTest, RefusedOffloadsAskForAReset) {
  log.refuse = true;
  activate(kAllFeatures);
  EXPECT_EQ(interrupt.needs_reset, 1);
  transmit(tx_chain(0, kTxData, make_packet(100, 20), {100}));
  EXPECT_EQ(host_receive(), std::nullopt);
  EXPECT_EQ(tx.used_idx(), 0);
  device->reset([] {});
  log.refuse = false;
  activate(kAllFeatures);
  transmit(tx_chain(0, kTxData, make_packet(100, 20), {100}));
  EXPECT_NE(host_receive(), std::nullopt);
}

TEST_F(VirtioNetTest, ResetDiscardsAWaitingTransmitChain) {
  create(/*sndbuf=*/4096);
  activate(kAllFeatures);
  for (uint16_t i = 0; i < 64; ++i) {
    tx.publish(tx_chain(i, kTxData + 0x1000ull * i, make_packet(1500, 21), {1500}));
  }
  device->notify(1);
  const uint16_t used = tx.used_idx();
  ASSERT_LT(used, 64);
  device->reset([] {});
  while (host_receive()) {
  }
  EXPECT_EQ(idle_round(), 0u);  // not watching for writability any more
  EXPECT_EQ(tx.used_idx(), used);
  EXPECT_EQ(host_receive(), std::nullopt);

  // Set up again, it works as new.
  activate(kAllFeatures);
  const Packet packet = make_packet(100, 22);
  transmit(tx_chain(0, kTxData, packet, {100}));
  EXPECT_EQ(host_receive(), packet);
  EXPECT_EQ(tx.used_idx(), 1);
}

TEST_F(VirtioNetTest, IgnoresNotificationsWhileNotActive) {
  tx_chain(0, kTxData, make_packet(100, 23), {100});
  tx.publish(0);
  device->notify(1);
  device->notify(0);
  host_send(make_packet(100, 24));
  EXPECT_EQ(idle_round(), 0u);
  EXPECT_EQ(host_receive(), std::nullopt);
}

TEST_F(VirtioNetTest, HostileChainsBreakTheQueueNotTheDevice) {
  activate(kAllFeatures);
  // A transmit chain that loops.
  tx.desc(0, kTxData, 100, kVirtqDescFNext, 1);
  tx.desc(1, kTxData + 100, 100, kVirtqDescFNext, 0);
  transmit(0);
  EXPECT_EQ(interrupt.needs_reset, 1);
  transmit(0);
  EXPECT_EQ(interrupt.needs_reset, 1);
  EXPECT_EQ(host_receive(), std::nullopt);

  // A receive buffer outside guest memory.
  rx.desc(0, kRamSize - 100, 2000, kVirtqDescFWrite);
  rx.publish(0);
  host_send(make_packet(100, 25));
  loop.run_once(100);
  EXPECT_EQ(interrupt.needs_reset, 2);
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(idle_round(), 0u);  // a broken receive queue is not polled
  device->notify(0);
  EXPECT_EQ(interrupt.needs_reset, 2);
}

TEST_F(VirtioNetTest, LeavesTheLoopWhenTheBackendHangsUp) {
  activate(kAllFeatures);
  post_rx(0, kRxData, 2000);
  device->notify(0);
  peer.reset();
  loop.run_once(100);  // the hang-up
  EXPECT_EQ(idle_round(), 0u) << "the device spins on a hung-up fd";
  EXPECT_EQ(rx.used_idx(), 0);
  device.reset();  // must not trip over the registration it already gave up
}

// ---- Snapshot and restore ----

// The virtio-net device of a restored machine (a clone): a copy of the snapshot's RAM, its own
// queues and loop, and a new backend (a new tap).
struct RestoredNet {
  explicit RestoredNet(const std::vector<uint8_t>& snapshot_ram) : ram(snapshot_ram) {
    auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
    peer = std::move(host_end);
    device.emplace(ram.memory, loop, std::make_unique<FakeBackend>(std::move(device_end), log),
                   kMac, "eth0 (fake1)");
  }
  void restore(const std::vector<uint8_t>& bytes, uint64_t features) {
    testing::restore_device(bytes, Activation{features, {&rx_queue, &tx_queue}, &interrupt},
                            *device);
    rx.set_avail_idx(*ram.memory.read_obj<uint16_t>(rx_queue.config().avail_ring + 2));
  }
  // The driver's read of the status, as virtnet_config_changed_work does it.
  uint16_t status() const {
    uint16_t status = 0xffff;
    device->read_config(6, {reinterpret_cast<uint8_t*>(&status), 2});
    return status;
  }

  testing::RestoredRam ram;
  EventLoop loop;
  SplitQueue rx_queue{ram.memory, VirtioNet::kQueueSize};
  SplitQueue tx_queue{ram.memory, VirtioNet::kQueueSize};
  Driver rx{ram.memory, testing::queue_config(0, VirtioNet::kQueueSize)};
  testing::FakeDeviceInterrupt interrupt;
  BackendLog log;
  UniqueFd peer;
  std::optional<VirtioNet> device;
};

// Held receive chains, a packet staged for want of buffers and a transmit chain waiting for the
// backend: all carry on in the restored device, on its new backend.
TEST_F(VirtioNetTest, WhatTheDeviceHeldCarriesOnAfterARestore) {
  create(/*sndbuf=*/4096);
  activate(kAllFeatures);
  post_rx(0, kRxData, 1000);
  const Packet packet = make_packet(2500, 26);
  host_send(packet);
  loop.run_once(100);  // one chain held, the packet staged: it needs three
  ASSERT_EQ(rx.used_idx(), 0);
  constexpr uint16_t kCount = 16;
  std::vector<Packet> sent;
  for (uint16_t i = 0; i < kCount; ++i) {
    sent.push_back(make_packet(1500, static_cast<uint8_t>(i)));
    tx.publish(tx_chain(i, kTxData + 0x1000ull * i, sent.back(), {1500}));
  }
  device->notify(1);
  const uint16_t gone = tx.used_idx();
  ASSERT_LT(gone, kCount) << "the socket never filled up";
  const std::vector<uint8_t> bytes = testing::save_device({&rx_queue, &tx_queue}, *device);

  RestoredNet restored(ram);
  restored.restore(bytes, kAllFeatures);
  EXPECT_THAT(restored.log.offloads, ElementsAre(log.offloads.back()));
  // The link reads down, announced; reading the MAC changes nothing; reading the status brings
  // the link up, announced again.
  EXPECT_EQ(restored.interrupt.config_changes, 1);
  std::array<uint8_t, 6> mac{};
  restored.device->read_config(0, mac);
  EXPECT_EQ(mac, kMac);
  EXPECT_EQ(restored.interrupt.config_changes, 1);
  EXPECT_EQ(restored.status(), 0);
  EXPECT_EQ(restored.interrupt.config_changes, 2);
  EXPECT_EQ(restored.status(), kNetStatusLinkUp);
  EXPECT_EQ(restored.interrupt.config_changes, 2);

  // Transmit: the waiting chain first, then the rest, in order, on the new backend; the old
  // device sends the same ones on its own.
  restored.device->notify(1);  // as the transport notifies every queue
  std::vector<Packet> restored_received;
  while (auto one = receive_packet(restored.peer.get())) restored_received.push_back(*one);
  EXPECT_TRUE(restored_received == std::vector<Packet>(sent.begin() + gone, sent.end()));
  std::vector<Packet> received;
  for (int round = 0; round < 200 && received.size() < kCount; ++round) {
    while (auto one = host_receive()) received.push_back(std::move(*one));
    loop.run_once(100);
  }
  EXPECT_TRUE(received == sent);

  // Receive: two more buffers, and the staged packet lands across three chains in both.
  for (uint16_t i = 1; i < 3; ++i) {
    post_rx(i, kRxData + 0x1000ull * i, 1000);
    restored.rx.desc(i, kRxData + 0x1000ull * i, 1000, kVirtqDescFWrite);
    restored.rx.publish(i);
  }
  device->notify(0);
  restored.device->notify(0);
  ASSERT_EQ(rx.used_idx(), 3);
  ASSERT_EQ(*restored.ram.memory.read_obj<uint16_t>(restored.rx_queue.config().used_ring + 2), 3);
  const Packet expected = with_num_buffers(packet, 3);
  for (const GuestMemory* m : {&memory, &restored.ram.memory}) {
    Packet landed(2500);
    ASSERT_TRUE(m->read(kRxData, std::span(landed).first(1000)));
    ASSERT_TRUE(m->read(kRxData + 0x1000, std::span(landed).subspan(1000, 1000)));
    ASSERT_TRUE(m->read(kRxData + 0x2000, std::span(landed).subspan(2000)));
    EXPECT_EQ(landed, expected);
  }
  EXPECT_EQ(restored.device->counters().rx_packets, 1u);
  EXPECT_EQ(restored.device->counters().rx_dropped, 0u);
}

TEST_F(VirtioNetTest, NoLinkChangeForADriverWithoutTheStatusFeature) {
  activate(kAllFeatures & ~kNetFeatureStatus);
  RestoredNet restored(ram);
  restored.restore(testing::save_device({&rx_queue, &tx_queue}, *device),
                   kAllFeatures & ~kNetFeatureStatus);
  EXPECT_EQ(restored.interrupt.config_changes, 0);
  EXPECT_EQ(restored.status(), kNetStatusLinkUp);
}

TEST_F(VirtioNetTest, AResetEndsTheLinkChange) {
  activate(kAllFeatures);
  RestoredNet restored(ram);
  restored.restore(testing::save_device({&rx_queue, &tx_queue}, *device), kAllFeatures);
  restored.device->reset([] {});
  EXPECT_EQ(restored.status(), kNetStatusLinkUp);  // what the next driver reads at its probe
  EXPECT_EQ(restored.interrupt.config_changes, 1);
}

TEST_F(VirtioNetTest, ABadStagedPacketOrATruncatedStateIsRefused) {
  activate(kAllFeatures);
  const auto with_staged = [&](size_t size) {
    StateWriter out;
    rx_queue.save_state(out);
    tx_queue.save_state(out);
    StateWriter own;
    SplitQueue::save_chains(own, {});
    SplitQueue::save_chains(own, {});
    own.put_bytes(std::vector<uint8_t>(size));
    out.put_bytes(own.bytes());
    return out.take();
  };
  RestoredNet short_packet(ram);
  EXPECT_THAT([&] { short_packet.restore(with_staged(5), kAllFeatures); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr(
                  "device: corrupt state: the staged packet of 5 bytes is shorter than a header")));
  RestoredNet long_packet(ram);
  EXPECT_THAT([&] { long_packet.restore(with_staged(kNetMaxPacket + 1024), kAllFeatures); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("exceeds its limit")));
  const std::vector<uint8_t> bytes = with_staged(kNetHdrSize);
  RestoredNet accepted(ram);
  accepted.restore(bytes, kAllFeatures);
  for (size_t size = 0; size < bytes.size(); ++size) {
    RestoredNet restored(ram);
    EXPECT_THROW(restored.restore({bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)},
                                  kAllFeatures),
                 Error)
        << size;
  }
}

// ---- Rate limits ----

// 20 packets a second, a burst of one: the second packet waits 50 ms for its token.
constexpr RateLimit kOnePerFiftyMs{.ops_per_second = 20, .ops_burst = 1};

class VirtioNetRateLimitTest : public VirtioNetTest {
 protected:
  void limit(const NetRateLimits& limits) {
    device.reset();
    auto [device_end, host_end] = devices::testing::socket_pair(SOCK_SEQPACKET);
    peer = std::move(host_end);
    device.emplace(memory, loop, std::make_unique<FakeBackend>(std::move(device_end), log), kMac,
                   "eth0 (fake0)", limits);
    activate(kAllFeatures);
  }
  // Runs the loop until `driver`'s used ring holds `count` entries.
  void run_until_used(const Driver& driver, uint16_t count) {
    for (int i = 0; i < 50 && driver.used_idx() < count; ++i) loop.run_once(100);
    ASSERT_EQ(driver.used_idx(), count);
  }
};

TEST_F(VirtioNetRateLimitTest, ATransmitOverTheLimitWaitsInTheRingAndLeavesInOrder) {
  limit({.tx = kOnePerFiftyMs});
  const Packet first = make_packet(100, 1);
  const Packet second = make_packet(200, 2);
  tx_chain(0, kTxData, first, {100});
  tx_chain(1, kTxData + 0x1000, second, {200});
  tx.publish(0);
  tx.publish(1);
  device->notify(1);
  EXPECT_EQ(host_receive(), first);
  EXPECT_EQ(host_receive(), std::nullopt);
  EXPECT_EQ(tx.used_idx(), 1);
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
  EXPECT_THAT(device->debug_state(), ::testing::HasSubstr("a chain waits for the rate limit"));
  EXPECT_EQ(idle_round(), 0u);  // the writable backend is not watched meanwhile: no spinning
  device->notify(1);            // nor does a notification start it early
  EXPECT_EQ(host_receive(), std::nullopt);
  run_until_used(tx, 2);
  EXPECT_EQ(tx.used(1).id, 1u);
  EXPECT_EQ(host_receive(), second);
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
}

TEST_F(VirtioNetRateLimitTest, AReceivedPacketOverTheLimitWaitsAndNothingIsDropped) {
  limit({.rx = {.bytes_per_second = 20 * 1000, .bytes_burst = 1000}});
  post_rx(0, kRxData, 4096);
  post_rx(1, kRxData + 0x2000, 4096);
  const Packet first = make_packet(1000 + kNetHdrSize, 1);
  const Packet second = make_packet(500 + kNetHdrSize, 2);
  host_send(first);
  host_send(second);
  loop.run_once(100);
  ASSERT_EQ(rx.used_idx(), 1);
  EXPECT_EQ(guest(kRxData, first.size()), with_num_buffers(first, 1));
  EXPECT_EQ(device->metrics().rate_limit_waits, 1u);
  EXPECT_EQ(idle_round(), 0u);  // the readable backend is not watched meanwhile
  run_until_used(rx, 2);        // 500 bytes at 20,000 a second: 25 ms
  EXPECT_EQ(guest(kRxData + 0x2000, second.size()), with_num_buffers(second, 1));
  EXPECT_EQ(device->counters().rx_dropped, 0u);
}

TEST_F(VirtioNetRateLimitTest, ALiveChangeSendsAWaitingPacketAtOnce) {
  limit({.tx = {.ops_per_second = 1, .ops_burst = 1}});  // a 1 s wait
  tx_chain(0, kTxData, make_packet(100, 1), {100});
  tx_chain(1, kTxData + 0x1000, make_packet(100, 2), {100});
  tx.publish(0);
  tx.publish(1);
  device->notify(1);
  EXPECT_EQ(tx.used_idx(), 1);
  device->set_rate_limits({});
  const auto began = std::chrono::steady_clock::now();
  run_until_used(tx, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(500));
}

TEST_F(VirtioNetRateLimitTest, AResetGivesUpTheChainWaitingForTheLimit) {
  limit({.tx = kOnePerFiftyMs});
  tx_chain(0, kTxData, make_packet(100, 1), {100});
  tx_chain(1, kTxData + 0x1000, make_packet(100, 2), {100});
  tx.publish(0);
  tx.publish(1);
  device->notify(1);
  bool reset_done = false;
  device->reset([&] { reset_done = true; });
  EXPECT_TRUE(reset_done);
  for (int i = 0; i < 3; ++i) loop.run_once(40);  // past the timer's 50 ms: nothing fires
  EXPECT_EQ(tx.used_idx(), 1);
  ASSERT_TRUE(host_receive().has_value());
  EXPECT_EQ(host_receive(), std::nullopt);
}

}  // namespace
}  // namespace vmm::devices::virtio
