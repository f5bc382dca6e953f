#include "devices/virtio/vsock/connection.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "devices/virtio/vsock/packet.hpp"
#include "tests/devices/fakes.hpp"

namespace vmm::devices::virtio::vsock {
namespace {

class VsockConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [device_end, host_end] = devices::testing::socket_pair(SOCK_STREAM);
    conn.emplace(std::move(device_end), 1u << 30, 1234, Connection::State::kEstablished);
    peer = std::move(host_end);
  }

  size_t drain_peer() {
    std::vector<uint8_t> bytes(1 << 20);
    size_t total = 0;
    ssize_t n;
    while ((n = recv(peer.get(), bytes.data(), bytes.size(), MSG_DONTWAIT)) > 0) {
      total += static_cast<size_t>(n);
    }
    return total;
  }

  std::optional<Connection> conn;
  UniqueFd peer;
};

// Fills a reserved room with the running byte sequence `next`, `next + 1`, ...
void fill(const Connection::Room& room, uint8_t& next) {
  for (auto& byte : room.first) byte = next++;
  for (auto& byte : room.second) byte = next++;
}

TEST_F(VsockConnectionTest, PeerCreditIsBufAllocMinusWhatIsInFlight) {
  EXPECT_EQ(conn->peer_credit(), 0u);  // until the guest tells its buf_alloc
  conn->update_peer_credit(1000, 0);
  EXPECT_EQ(conn->peer_credit(), 1000u);
  conn->count_sent(600);
  EXPECT_EQ(conn->peer_credit(), 400u);
  conn->count_sent(400);
  EXPECT_EQ(conn->peer_credit(), 0u);
  conn->update_peer_credit(1000, 500);
  EXPECT_EQ(conn->peer_credit(), 500u);
  // The guest shrinks its buffer below what is in flight: no credit, not a huge one.
  conn->update_peer_credit(100, 500);
  EXPECT_EQ(conn->peer_credit(), 0u);
  // A guest claiming to have consumed more than we sent gets none either.
  conn->update_peer_credit(1000, 2000);
  EXPECT_EQ(conn->peer_credit(), 0u);
}

TEST_F(VsockConnectionTest, PeerCreditCountsAcrossTheWrap) {
  conn->count_sent(0xfffffff0u);
  conn->update_peer_credit(4096, 0xfffffff0u);
  conn->count_sent(0x20);  // tx_cnt wraps to 0x10
  EXPECT_EQ(conn->peer_credit(), 4096u - 0x20);
}

TEST_F(VsockConnectionTest, BuffersAtMostBufAllocAndForwardsInOrder) {
  // The peer does not read: the socket takes what its buffer holds, the rest waits here.
  std::vector<uint8_t> chunk(kMaxPayload);
  size_t written = 0;
  uint8_t seed = 0;
  while (true) {
    auto room = conn->reserve(static_cast<uint32_t>(chunk.size()));
    if (!room) break;
    fill(*room, seed);
    written += chunk.size();
    ASSERT_NE(conn->flush(), Connection::Flush::kBroken);
    ASSERT_LT(written, 10u << 20);
  }
  EXPECT_GT(conn->buffered(), kBufAlloc - kMaxPayload);
  EXPECT_LE(conn->buffered(), kBufAlloc);
  EXPECT_EQ(conn->fwd_cnt(), written - conn->buffered());
  EXPECT_TRUE(conn->credit_update_due());
  conn->reported_fwd_cnt();
  EXPECT_FALSE(conn->credit_update_due());

  // Reading on the peer lets the buffer drain, bytes in order.
  std::vector<uint8_t> received;
  while (received.size() < written) {
    std::vector<uint8_t> bytes(1 << 20);
    const ssize_t n = recv(peer.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
    if (n > 0) received.insert(received.end(), bytes.begin(), bytes.begin() + n);
    ASSERT_NE(conn->flush(), Connection::Flush::kBroken);
  }
  EXPECT_EQ(conn->buffered(), 0u);
  EXPECT_EQ(conn->fwd_cnt(), written);
  for (size_t i = 0; i < received.size(); ++i) ASSERT_EQ(received[i], static_cast<uint8_t>(i));
}

TEST_F(VsockConnectionTest, FlushReportsABrokenSocketAndDiscardCountsAsForwarded) {
  auto room = conn->reserve(100);
  ASSERT_TRUE(room);
  peer.reset();
  EXPECT_EQ(conn->flush(), Connection::Flush::kBroken);
  conn->discard_buffered();
  EXPECT_EQ(conn->buffered(), 0u);
  EXPECT_EQ(conn->fwd_cnt(), 100u);
}

TEST_F(VsockConnectionTest, RefusesDataBeyondTheCredit) {
  EXPECT_FALSE(conn->reserve(kBufAlloc + 1));
  EXPECT_EQ(conn->buffered(), 0u);
  ASSERT_TRUE(conn->reserve(kBufAlloc));
  EXPECT_FALSE(conn->reserve(1));
  size_t received = 0;
  while (received < kBufAlloc) {
    ASSERT_NE(conn->flush(), Connection::Flush::kBroken);
    received += drain_peer();
  }
  EXPECT_EQ(conn->flush(), Connection::Flush::kDone);
  EXPECT_TRUE(conn->reserve(kBufAlloc));
}

TEST_F(VsockConnectionTest, RingNeverHoldsMoreThanBufAllocUnderSmallWritesAndPartialReads) {
  // A small socket buffer, odd-sized guest writes and host reads smaller than them keep the ring
  // nearly full and wrapping: the pattern that grew the old vector to almost 1 MiB.
  const int sndbuf = 4096;
  ASSERT_EQ(setsockopt(conn->fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf), 0);
  uint8_t write_seed = 0;
  uint8_t read_seed = 0;
  uint32_t lcg = 12345;
  const auto next_random = [&lcg](uint32_t bound) {
    lcg = lcg * 1664525u + 1013904223u;
    return 1 + (lcg >> 8) % bound;
  };
  size_t wrapped_reservations = 0;
  size_t refused_reservations = 0;
  std::vector<uint8_t> bytes(4096);
  for (int round = 0; round < 20000; ++round) {
    if (auto room = conn->reserve(next_random(3000))) {
      fill(*room, write_seed);
      if (!room->second.empty()) ++wrapped_reservations;
    } else {
      ++refused_reservations;
    }
    ASSERT_NE(conn->flush(), Connection::Flush::kBroken);
    ASSERT_LE(conn->capacity(), kBufAlloc) << "round " << round;
    const ssize_t n = recv(peer.get(), bytes.data(), next_random(2000), MSG_DONTWAIT);
    for (ssize_t i = 0; i < n; ++i) ASSERT_EQ(bytes[i], read_seed++) << "round " << round;
  }
  EXPECT_GT(wrapped_reservations, 0u);
  EXPECT_GT(refused_reservations, 0u);  // the ring was full at times: the bound was reached
  EXPECT_EQ(conn->capacity(), kBufAlloc);
}

TEST_F(VsockConnectionTest, RingGrowsWithWhatIsBuffered) {
  EXPECT_EQ(conn->capacity(), 0u);  // nothing allocated before the first byte
  ASSERT_TRUE(conn->reserve(100));
  EXPECT_EQ(conn->capacity(), 4096u);
  ASSERT_EQ(conn->flush(), Connection::Flush::kDone);
  ASSERT_TRUE(conn->reserve(kMaxPayload));
  EXPECT_EQ(conn->capacity(), kMaxPayload);
}

}  // namespace
}  // namespace vmm::devices::virtio::vsock
