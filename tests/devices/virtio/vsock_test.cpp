#include "devices/virtio/vsock.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "base/util/error.hpp"
#include "base/util/unique_fd.hpp"
#include "devices/virtio/vsock/unix_socket.hpp"
#include "tests/devices/temp_dir.hpp"
#include "tests/devices/virtio/device_state.hpp"
#include "tests/devices/virtio_driver.hpp"

namespace vmm::devices::virtio {
namespace {

using testing::Driver;
using ::testing::ElementsAre;
using vsock::Header;
using vsock::kHeaderSize;

constexpr uint64_t kRamSize = 8 << 20;
constexpr uint64_t kRxData = 0x100000;  // buffer i at kRxData + i * kRxStride
constexpr uint64_t kRxStride = 0x2000;
constexpr uint64_t kTxData = 0x400000;  // slot i at kTxData + i * kTxStride
constexpr uint64_t kTxStride = 0x11000;
constexpr uint16_t kTxSlots = 32;
constexpr uint64_t kEvents = 0x300000;                  // event buffer i at kEvents + i * 16
constexpr uint32_t kRxBufferSize = 4096 + kHeaderSize;  // what Linux posts

constexpr uint64_t kGuestCid = 3;
constexpr uint64_t kFeatures = kFeatureVersion1 | kFeatureRingEventIdx | kFeatureRingIndirectDesc;

// A header's fields, unpacked (gtest takes references).
struct Fields {
  uint64_t src_cid, dst_cid;
  uint32_t src_port, dst_port, len;
  uint16_t type, op;
  uint32_t flags, buf_alloc, fwd_cnt;
};
Fields unpack(const Header& h) {
  return {h.src_cid, h.dst_cid, h.src_port, h.dst_port,  h.len,
          h.type,    h.op,      h.flags,    h.buf_alloc, h.fwd_cnt};
}

// A packet the guest received.
struct RxPacket {
  Fields header;
  std::string payload;
};

// A host program's end of a Unix socket, non-blocking: the device runs on this thread too.
UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
  return fd;
}

void send_all(int fd, const std::string& bytes) {
  ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(bytes.size()));
}

// What the socket holds now; nullopt once it reports EOF (with nothing before it).
std::optional<std::string> receive(int fd) {
  std::string bytes;
  char buffer[65536];
  while (true) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      bytes.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 && bytes.empty()) return std::nullopt;
    return bytes;
  }
}

// The device closed its end: EOF, or ECONNRESET when it left our bytes unread.
bool at_eof(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

class VirtioVsockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path = dir.file("v.sock");
    device.emplace(loop, kGuestCid, path, "vsock0");
  }

  void activate() {
    std::fill(ram.begin(), ram.begin() + 0x10000, 0);  // fresh rings (queue_config's)
    testing::activate_queue(rx_queue, rx, 0, /*event_idx=*/true);
    testing::activate_queue(tx_queue, tx, 1, /*event_idx=*/true);
    testing::activate_queue(ev_queue, ev, 2, /*event_idx=*/true);
    rx_posted = 0;
    rx_seen = 0;
    tx_sent = 0;
    device->activate(Activation{kFeatures, {&rx_queue, &tx_queue, &ev_queue}, &interrupt});
  }

  // Makes `count` receive buffers of `size` bytes available and notifies.
  void post_rx(int count, uint32_t size = kRxBufferSize) {
    for (int i = 0; i < count; ++i) {
      const auto index = static_cast<uint16_t>(rx_posted++ % VirtioVsock::kQueueSize);
      rx.desc(index, kRxData + index * kRxStride, size, kVirtqDescFWrite);
      rx.publish(index);
    }
    device->notify(0);
  }

  // The packets the device wrote since the last call.
  std::vector<RxPacket> take_rx() {
    std::vector<RxPacket> packets;
    while (rx_seen != rx.used_idx()) {
      const VirtqUsedElem used = rx.used(rx_seen++);
      RxPacket packet{};
      const uint64_t gpa = kRxData + used.id * kRxStride;
      EXPECT_TRUE(memory.read_obj<Header>(gpa).has_value());
      packet.header = unpack(*memory.read_obj<Header>(gpa));
      EXPECT_EQ(used.len, kHeaderSize + packet.header.len);
      packet.payload.resize(packet.header.len);
      EXPECT_TRUE(memory.read(
          gpa + kHeaderSize,
          std::span(reinterpret_cast<uint8_t*>(packet.payload.data()), packet.payload.size())));
      packets.push_back(std::move(packet));
    }
    return packets;
  }

  Header guest_header(uint32_t guest_port, uint32_t host_port, uint16_t op) const {
    Header header{};
    header.src_cid = kGuestCid;
    header.dst_cid = vsock::kHostCid;
    header.src_port = guest_port;
    header.dst_port = host_port;
    header.type = vsock::kTypeStream;
    header.op = op;
    header.buf_alloc = guest_buf_alloc;
    header.fwd_cnt = guest_fwd_cnt;
    return header;
  }

  // Transmits header + payload as two descriptors (one if there is no payload), like Linux.
  // `len` overrides the header's length (the payload's by default).
  void send_tx(Header header, const std::string& payload = "",
               std::optional<uint32_t> len = std::nullopt) {
    header.len = len.value_or(static_cast<uint32_t>(payload.size()));
    const uint16_t slot = tx_sent++ % kTxSlots;
    const uint64_t gpa = kTxData + slot * kTxStride;
    ASSERT_TRUE(memory.write_obj(gpa, header));
    ASSERT_TRUE(
        memory.write(gpa + kHeaderSize,
                     std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size())));
    const auto head = static_cast<uint16_t>(slot * 2);
    if (payload.empty()) {
      tx.desc(head, gpa, kHeaderSize);
    } else {
      tx.desc(head, gpa, kHeaderSize, kVirtqDescFNext, head + 1);
      tx.desc(head + 1, gpa + kHeaderSize, static_cast<uint32_t>(payload.size()));
    }
    tx.publish(head);
    device->notify(1);
  }
  void send_op(uint32_t guest_port, uint32_t host_port, uint16_t op, uint32_t flags = 0) {
    Header header = guest_header(guest_port, host_port, op);
    header.flags = flags;
    send_tx(header);
  }

  // Lets the loop handle what is ready (nothing waits).
  void pump() {
    for (int i = 0; i < 8; ++i) loop.run_once(0);
  }
  uint64_t idle_round() {
    const uint64_t before = loop.dispatched();
    loop.run_once(0);
    return loop.dispatched() - before;
  }

  // A host program connects and writes `bytes` (a CONNECT line, maybe more): its socket, and
  // what the device gave the guest.
  struct HostRequest {
    UniqueFd client;
    std::vector<RxPacket> packets;
  };
  HostRequest connect_and_send(const std::string& bytes) {
    UniqueFd client = connect_to(path);
    send_all(client.get(), bytes);
    pump();
    return {std::move(client), take_rx()};
  }

  // A host program connects to guest port `guest_port` and the guest accepts: the program's
  // socket and the host port.
  struct HostConnection {
    UniqueFd client;
    uint32_t port;
  };
  HostConnection connect_from_host(uint32_t guest_port) {
    auto [client, packets] = connect_and_send("CONNECT " + std::to_string(guest_port) + "\n");
    EXPECT_EQ(packets.size(), 1u);
    if (packets.size() != 1) return {std::move(client), 0};
    const Fields& request = packets[0].header;
    EXPECT_EQ(request.op, vsock::kOpRequest);
    EXPECT_EQ(request.dst_port, guest_port);
    send_op(guest_port, request.src_port, vsock::kOpResponse);
    pump();
    EXPECT_EQ(receive(client.get()), "OK " + std::to_string(request.src_port) + "\n");
    return {std::move(client), request.src_port};
  }

  devices::testing::TempDir dir;
  std::string path;
  std::vector<uint8_t> ram = std::vector<uint8_t>(kRamSize);
  GuestMemory memory = GuestMemory::from_regions({{0, kRamSize, ram.data()}});
  EventLoop loop;
  SplitQueue rx_queue{memory, VirtioVsock::kQueueSize};
  SplitQueue tx_queue{memory, VirtioVsock::kQueueSize};
  SplitQueue ev_queue{memory, VirtioVsock::kQueueSize};
  Driver rx{memory, testing::queue_config(0, VirtioVsock::kQueueSize)};
  Driver tx{memory, testing::queue_config(1, VirtioVsock::kQueueSize)};
  Driver ev{memory, testing::queue_config(2, VirtioVsock::kQueueSize)};
  uint32_t rx_posted = 0;
  uint16_t rx_seen = 0;
  uint16_t tx_sent = 0;
  uint32_t guest_buf_alloc = 256 * 1024;
  uint32_t guest_fwd_cnt = 0;
  testing::FakeDeviceInterrupt interrupt;
  std::optional<VirtioVsock> device;
};

TEST_F(VirtioVsockTest, OffersStreamFeaturesThreeQueuesAndTheGuestCid) {
  EXPECT_EQ(device->device_id(), 19u);
  EXPECT_EQ(device->features(), kFeatures);
  EXPECT_THAT(device->queue_max_sizes(), ElementsAre(256, 256, 256));
  uint8_t config[12];
  device->read_config(0, config);
  EXPECT_THAT(std::vector<uint8_t>(config, config + 12),
              ElementsAre(3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
  uint8_t high[4];
  device->read_config(4, high);
  EXPECT_THAT(high, ElementsAre(0, 0, 0, 0));
}

TEST_F(VirtioVsockTest, HostInitiatedConnectAndDataBothWays) {
  activate();
  post_rx(16);
  auto [client, packets] = connect_and_send("CONNECT 1234\n");
  ASSERT_EQ(packets.size(), 1u);
  const Fields& request = packets[0].header;
  EXPECT_EQ(request.op, vsock::kOpRequest);
  EXPECT_EQ(request.src_cid, vsock::kHostCid);
  EXPECT_EQ(request.dst_cid, kGuestCid);
  EXPECT_EQ(request.dst_port, 1234u);
  EXPECT_GE(request.src_port, VirtioVsock::kFirstHostPort);
  EXPECT_EQ(request.type, vsock::kTypeStream);
  EXPECT_EQ(request.buf_alloc, vsock::kBufAlloc);
  EXPECT_GT(interrupt.used, 0);
  const uint32_t host_port = request.src_port;
  EXPECT_EQ(receive(client.get()), "");  // nothing until the guest accepts

  send_op(1234, host_port, vsock::kOpResponse);
  pump();
  EXPECT_EQ(receive(client.get()), "OK " + std::to_string(host_port) + "\n");

  send_all(client.get(), "hello");
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRw);
  EXPECT_EQ(packets[0].header.src_port, host_port);
  EXPECT_EQ(packets[0].header.dst_port, 1234u);
  EXPECT_EQ(packets[0].payload, "hello");

  send_tx(guest_header(1234, host_port, vsock::kOpRw), "world");
  EXPECT_EQ(receive(client.get()), "world");
  EXPECT_EQ(tx.used_idx(), 2);
  EXPECT_EQ(device->connection_count(), 1u);
  EXPECT_EQ(idle_round(), 0u);
  // The request, the response and the data both ways, at least; "hello" and "world" are payload.
  EXPECT_GE(device->metrics().requests, 4u);
  EXPECT_EQ(device->metrics().bytes, 10u);
  EXPECT_EQ(device->metrics().errors, 0u);
}

TEST_F(VirtioVsockTest, SplitsSocketDataAcrossReceiveBuffers) {
  activate();
  post_rx(8);
  UniqueFd client = connect_from_host(1234).client;
  std::string data(10000, 0);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  send_all(client.get(), data);
  pump();
  std::string received;
  for (const auto& packet : take_rx()) {
    EXPECT_EQ(packet.header.op, vsock::kOpRw);
    EXPECT_LE(packet.payload.size(), kRxBufferSize - kHeaderSize);
    received += packet.payload;
  }
  EXPECT_TRUE(received == data);
}

TEST_F(VirtioVsockTest, TwoHostConnectionsGetDistinctPortsAndDataAfterTheLineStaysInOrder) {
  activate();
  post_rx(16);
  auto [first, first_port] = connect_from_host(80);
  // The line and the first data in one write: the data is the stream's, read after RESPONSE.
  auto [second, packets] = connect_and_send("CONNECT 80\nearly");
  ASSERT_EQ(packets.size(), 1u);
  const uint32_t second_port = packets[0].header.src_port;
  EXPECT_NE(second_port, first_port);
  send_op(80, second_port, vsock::kOpResponse);
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "early");
  EXPECT_EQ(receive(second.get()), "OK " + std::to_string(second_port) + "\n");
}

TEST_F(VirtioVsockTest, GuestRstRefusesAHostConnect) {
  activate();
  post_rx(4);
  auto [client, packets] = connect_and_send("CONNECT 99\n");
  ASSERT_EQ(packets.size(), 1u);
  send_op(99, packets[0].header.src_port, vsock::kOpRst);
  pump();
  EXPECT_TRUE(at_eof(client.get()));
  EXPECT_EQ(device->connection_count(), 0u);
  EXPECT_TRUE(take_rx().empty());  // no RST answers an RST
}

TEST_F(VirtioVsockTest, MalformedConnectLinesCloseTheClient) {
  activate();
  post_rx(4);
  for (const std::string& line : std::vector<std::string>{
           "HELLO\n", "CONNECT\n", "CONNECT \n", "CONNECT abc\n", "CONNECT -1\n", "CONNECT +1\n",
           "CONNECT 4294967296\n", "CONNECT 12 \n", "connect 12\n", std::string(40, 'A')}) {
    UniqueFd client = connect_to(path);
    send_all(client.get(), line);
    pump();
    EXPECT_TRUE(at_eof(client.get())) << line;
  }
  // A client that hangs up mid-line.
  UniqueFd client = connect_to(path);
  send_all(client.get(), "CONN");
  pump();
  client.reset();
  pump();
  EXPECT_TRUE(take_rx().empty());
  EXPECT_EQ(device->connection_count(), 0u);
  EXPECT_EQ(idle_round(), 0u);
}

TEST_F(VirtioVsockTest, AHostConnectBeforeTheDriverIsUpIsClosed) {
  UniqueFd client = connect_to(path);
  pump();
  EXPECT_TRUE(at_eof(client.get()));
}

TEST_F(VirtioVsockTest, GuestInitiatedConnectToAListenerAndToNothing) {
  activate();
  post_rx(8);
  UniqueFd listener = vsock::listen_unix(path + "_5000");
  send_op(7000, 5000, vsock::kOpRequest);
  pump();
  auto packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpResponse);
  EXPECT_EQ(packets[0].header.src_port, 5000u);
  EXPECT_EQ(packets[0].header.dst_port, 7000u);
  EXPECT_EQ(packets[0].header.buf_alloc, vsock::kBufAlloc);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());

  send_tx(guest_header(7000, 5000, vsock::kOpRw), "ping");
  EXPECT_EQ(receive(server.get()), "ping");
  send_all(server.get(), "pong");
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "pong");

  send_op(7001, 5001, vsock::kOpRequest);
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRst);
  EXPECT_EQ(packets[0].header.src_port, 5001u);
  EXPECT_EQ(packets[0].header.dst_port, 7001u);
  EXPECT_EQ(device->connection_count(), 1u);
}

TEST_F(VirtioVsockTest, PacketsForUnknownConnectionsGetRst) {
  activate();
  post_rx(8);
  send_tx(guest_header(1, 2, vsock::kOpRw), "data");
  send_op(1, 2, vsock::kOpResponse);
  send_op(1, 2, vsock::kOpRst);  // not answered
  pump();
  const auto packets = take_rx();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRst);
  EXPECT_EQ(packets[1].header.op, vsock::kOpRst);
}

TEST_F(VirtioVsockTest, SendsNoMoreThanTheGuestsCreditAndResumesOnCreditUpdate) {
  activate();
  post_rx(32);
  guest_buf_alloc = 1000;
  auto [client, host_port] = connect_from_host(1234);
  const std::string data(5000, 'x');
  send_all(client.get(), data);
  pump();
  auto packets = take_rx();
  size_t received = 0;
  for (const auto& packet : packets) {
    if (packet.header.op == vsock::kOpRw) received += packet.payload.size();
  }
  EXPECT_EQ(received, 1000u);
  ASSERT_FALSE(packets.empty());
  EXPECT_EQ(packets.back().header.op, vsock::kOpCreditRequest);
  // Waiting for credit does not spin, and asks only once.
  EXPECT_EQ(idle_round(), 0u);
  pump();
  EXPECT_TRUE(take_rx().empty());

  guest_fwd_cnt = 1000;
  send_op(1234, host_port, vsock::kOpCreditUpdate);
  pump();
  received = 0;
  for (const auto& packet : take_rx()) {
    if (packet.header.op == vsock::kOpRw) received += packet.payload.size();
  }
  EXPECT_EQ(received, 1000u);

  // Any packet carries the credit: a bigger buf_alloc lets the rest through.
  guest_buf_alloc = 10000;
  send_op(1234, host_port, vsock::kOpCreditUpdate);
  pump();
  received = 0;
  for (const auto& packet : take_rx()) {
    EXPECT_EQ(packet.header.op, vsock::kOpRw);
    received += packet.payload.size();
  }
  EXPECT_EQ(received, 3000u);
}

TEST_F(VirtioVsockTest, AnswersCreditRequestAndUpdatesCreditAsTheSocketDrains) {
  activate();
  post_rx(32);
  auto [client, host_port] = connect_from_host(1234);
  send_op(1234, host_port, vsock::kOpCreditRequest);
  pump();
  auto packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpCreditUpdate);
  EXPECT_EQ(packets[0].header.buf_alloc, vsock::kBufAlloc);
  EXPECT_EQ(packets[0].header.fwd_cnt, 0u);

  // Half the buffer forwarded: the device tells the guest without being asked.
  const std::string chunk(vsock::kMaxPayload, 'y');
  for (uint32_t sent = 0; sent < vsock::kBufAlloc / 2; sent += vsock::kMaxPayload) {
    send_tx(guest_header(1234, host_port, vsock::kOpRw), chunk);
    EXPECT_EQ(receive(client.get())->size(), chunk.size());
  }
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpCreditUpdate);
  EXPECT_EQ(packets[0].header.fwd_cnt, vsock::kBufAlloc / 2);
}

TEST_F(VirtioVsockTest, GuestDataWaitsForASlowSocketWithinTheCredit) {
  activate();
  post_rx(32);
  auto [client, host_port] = connect_from_host(1234);
  // The program does not read. The guest sends exactly its credit: all of it is kept.
  std::string sent;
  for (uint32_t i = 0; i < vsock::kBufAlloc / vsock::kMaxPayload; ++i) {
    const std::string chunk(vsock::kMaxPayload, static_cast<char>('a' + i));
    send_tx(guest_header(1234, host_port, vsock::kOpRw), chunk);
    sent += chunk;
  }
  pump();
  EXPECT_EQ(device->counters().credit_overruns, 0u);
  EXPECT_EQ(device->connection_count(), 1u);
  // The socket drains as the program reads, in order.
  std::string received;
  for (int i = 0; i < 100 && received.size() < sent.size(); ++i) {
    received += receive(client.get()).value_or("");
    pump();
  }
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(idle_round(), 0u);  // not watching for EPOLLOUT any more
}

TEST_F(VirtioVsockTest, ResetsAGuestThatSendsBeyondItsCredit) {
  activate();
  post_rx(32);
  auto [client, host_port] = connect_from_host(1234);
  // The program does not read and the guest ignores the credit.
  const std::string chunk(vsock::kMaxPayload, 'z');
  int sent = 0;
  while (device->counters().credit_overruns == 0 && sent < 64) {
    send_tx(guest_header(1234, host_port, vsock::kOpRw), chunk);
    ++sent;
  }
  EXPECT_EQ(device->counters().credit_overruns, 1u);
  // Beyond kBufAlloc plus what the socket holds, and not much beyond.
  EXPECT_GT(static_cast<uint64_t>(sent) * chunk.size(), vsock::kBufAlloc);
  EXPECT_LT(sent, 20);
  EXPECT_EQ(device->connection_count(), 0u);
  pump();
  const auto packets = take_rx();
  ASSERT_FALSE(packets.empty());
  EXPECT_EQ(packets.back().header.op, vsock::kOpRst);
  // Whatever reached the socket before is there, then EOF.
  std::optional<std::string> bytes;
  while ((bytes = receive(client.get())) && !bytes->empty()) {
  }
  EXPECT_FALSE(bytes.has_value());
}

TEST_F(VirtioVsockTest, GuestShutdownShutsTheSocketDirections) {
  activate();
  post_rx(16);
  auto [client, host_port] = connect_from_host(1234);
  send_tx(guest_header(1234, host_port, vsock::kOpRw), "last words");
  send_op(1234, host_port, vsock::kOpShutdown, vsock::kShutdownSend);
  pump();
  EXPECT_EQ(receive(client.get()), "last words");
  EXPECT_TRUE(at_eof(client.get()));
  // The other direction still works.
  send_all(client.get(), "reply");
  pump();
  auto packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "reply");

  // The guest closes: no more receiving either, so the connection ends with an RST.
  send_op(1234, host_port, vsock::kOpShutdown, vsock::kShutdownRcv | vsock::kShutdownSend);
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRst);
  EXPECT_EQ(device->connection_count(), 0u);
  EXPECT_EQ(::send(client.get(), "x", 1, MSG_NOSIGNAL), -1);
}

TEST_F(VirtioVsockTest, SocketEofBecomesShutdownThenRst) {
  activate();
  post_rx(16);
  auto [client, host_port] = connect_from_host(1234);
  // Half-close: the guest learns the host sends no more, and can still send.
  send_all(client.get(), "bye");
  ASSERT_EQ(::shutdown(client.get(), SHUT_WR), 0);
  pump();
  auto packets = take_rx();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].payload, "bye");
  EXPECT_EQ(packets[1].header.op, vsock::kOpShutdown);
  EXPECT_EQ(packets[1].header.flags, vsock::kShutdownSend);
  send_tx(guest_header(1234, host_port, vsock::kOpRw), "still here");
  EXPECT_EQ(receive(client.get()), "still here");
  EXPECT_EQ(idle_round(), 0u);

  // The program goes away entirely: the connection is done.
  client.reset();
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRst);
  EXPECT_EQ(device->connection_count(), 0u);
  EXPECT_EQ(idle_round(), 0u);
}

TEST_F(VirtioVsockTest, AClosedSocketsDataStillReachesTheGuestBeforeItsShutdown) {
  activate();
  post_rx(16);
  guest_buf_alloc = 3;
  auto [client, host_port] = connect_from_host(1234);
  send_all(client.get(), "abcdef");
  client.reset();
  pump();
  auto packets = take_rx();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].payload, "abc");
  EXPECT_EQ(packets[1].header.op, vsock::kOpCreditRequest);
  EXPECT_EQ(idle_round(), 0u);  // the hung-up socket left the loop

  guest_fwd_cnt = 3;
  send_op(1234, host_port, vsock::kOpCreditUpdate);
  pump();
  packets = take_rx();
  ASSERT_EQ(packets.size(), 3u);
  EXPECT_EQ(packets[0].payload, "def");
  EXPECT_EQ(packets[1].header.op, vsock::kOpShutdown);
  EXPECT_EQ(packets[1].header.flags, vsock::kShutdownRcv | vsock::kShutdownSend);
  EXPECT_EQ(packets[2].header.op, vsock::kOpRst);
  EXPECT_EQ(device->connection_count(), 0u);
}

TEST_F(VirtioVsockTest, DataWaitsForReceiveBuffersWithoutSpinning) {
  activate();
  post_rx(2);
  UniqueFd client = connect_from_host(1234).client;  // the REQUEST takes one buffer
  send_all(client.get(), "one");
  pump();
  EXPECT_EQ(take_rx().size(), 1u);
  send_all(client.get(), "two");
  pump();
  EXPECT_TRUE(take_rx().empty());
  EXPECT_EQ(idle_round(), 0u);
  post_rx(1);
  pump();
  const auto packets = take_rx();
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].payload, "two");
}

TEST_F(VirtioVsockTest, DeviceResetClosesEverySocket) {
  activate();
  post_rx(16);
  UniqueFd client = connect_from_host(1234).client;
  UniqueFd pending = connect_to(path);
  send_all(pending.get(), "CONN");
  UniqueFd listener = vsock::listen_unix(path + "_5000");
  send_op(7000, 5000, vsock::kOpRequest);
  pump();
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(server.valid());
  EXPECT_EQ(device->connection_count(), 2u);

  device->reset([] {});
  EXPECT_EQ(device->connection_count(), 0u);
  // The peers see EOF at once, before the loop closes the fds.
  EXPECT_EQ(receive(client.get()), std::nullopt);
  EXPECT_EQ(receive(server.get()), std::nullopt);
  EXPECT_EQ(receive(pending.get()), std::nullopt);
  pump();
  EXPECT_EQ(idle_round(), 0u);

  // A new driver starts from scratch.
  activate();
  post_rx(4);
  auto [again, port] = connect_from_host(1234);
  EXPECT_GE(port, VirtioVsock::kFirstHostPort);
}

TEST_F(VirtioVsockTest, ReplacesAStaleSocketAndRefusesALiveOne) {
  // The fixture's device listens at `path`: a second one is refused.
  try {
    VirtioVsock second(loop, kGuestCid, path, "vsock1");
    ADD_FAILURE() << "a live socket was replaced";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), path + ": in use");
  }
  // The destructor removes the socket file.
  device.reset();
  EXPECT_FALSE(std::ifstream(path).good());
  EXPECT_NE(::access(path.c_str(), F_OK), 0);

  // A socket file left behind by a dead process is replaced.
  {
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  device.emplace(loop, kGuestCid, path, "vsock0");
  activate();
  post_rx(4);
  auto [client, port] = connect_from_host(1);
  EXPECT_GE(port, VirtioVsock::kFirstHostPort);

  std::ofstream(dir.file("regular")) << "x";
  try {
    VirtioVsock third(loop, kGuestCid, dir.file("regular"), "vsock2");
    ADD_FAILURE() << "a regular file was replaced";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), dir.file("regular") + ": exists and is not a socket");
  }
}

TEST_F(VirtioVsockTest, RefusesCidsThatAreNotAGuests) {
  for (uint64_t cid :
       {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{UINT32_MAX}, uint64_t{1} << 32}) {
    try {
      VirtioVsock bad(loop, cid, dir.file("bad.sock"), "vsock1");
      ADD_FAILURE() << cid;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), ::testing::StartsWith(fmt::format("guest cid {}: ", cid)));
    }
    EXPECT_NE(::access(dir.file("bad.sock").c_str(), F_OK), 0);  // nothing left behind
  }
}

TEST_F(VirtioVsockTest, DropsMalformedPacketsAndAnswersWellAddressedOnesWithRst) {
  activate();
  post_rx(16);
  // Shorter than a header.
  ASSERT_TRUE(memory.write_obj(kTxData, uint64_t{kGuestCid}));
  tx.desc(0, kTxData, 20);
  tx.publish(0);
  device->notify(1);
  tx_sent = 1;
  // Only device-writable descriptors.
  tx.desc(2, kTxData, 64, kVirtqDescFWrite);
  tx.publish(2);
  device->notify(1);
  tx_sent = 2;
  // From another cid, to another cid.
  Header header = guest_header(1, 5000, vsock::kOpRequest);
  header.src_cid = 4;
  send_tx(header);
  header = guest_header(1, 5000, vsock::kOpRequest);
  header.dst_cid = kGuestCid;
  send_tx(header);
  // A length beyond the chain.
  send_tx(guest_header(1, 5000, vsock::kOpRw), "abc", 4);
  pump();
  EXPECT_TRUE(take_rx().empty());
  EXPECT_EQ(device->counters().tx_dropped, 5u);
  EXPECT_EQ(device->counters().dropped(vsock::Verdict::kShort), 2u);
  EXPECT_EQ(device->counters().dropped(vsock::Verdict::kWrongAddress), 2u);
  EXPECT_EQ(device->counters().dropped(vsock::Verdict::kBadLength), 1u);
  EXPECT_EQ(tx.used_idx(), tx_sent);
  for (uint16_t i = 0; i < tx_sent; ++i) EXPECT_EQ(tx.used(i).len, 0u);

  // Well addressed but a seqpacket or an unknown op: RST, with the sender's type.
  header = guest_header(2, 5000, vsock::kOpRequest);
  header.type = 2;
  send_tx(header);
  send_op(3, 5000, 42);
  pump();
  const auto packets = take_rx();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].header.op, vsock::kOpRst);
  EXPECT_EQ(packets[0].header.type, 2);
  EXPECT_EQ(packets[0].header.dst_port, 2u);
  EXPECT_EQ(packets[1].header.op, vsock::kOpRst);
  EXPECT_EQ(packets[1].header.dst_port, 3u);
  EXPECT_EQ(device->counters().tx_dropped, 7u);
  EXPECT_EQ(device->counters().dropped(vsock::Verdict::kBadType), 1u);
  EXPECT_EQ(device->counters().dropped(vsock::Verdict::kUnknownOp), 1u);
  EXPECT_EQ(device->metrics().errors, 7u);
  EXPECT_EQ(interrupt.needs_reset, 0);
}

TEST_F(VirtioVsockTest, ReturnsReceiveChainsTooSmallEmpty) {
  activate();
  post_rx(1, kHeaderSize);
  post_rx(1);
  send_op(1, 5000, vsock::kOpRw);  // answered with RST into the good buffer
  pump();
  EXPECT_EQ(rx.used_idx(), 2);
  EXPECT_EQ(rx.used(0).len, 0u);
  EXPECT_EQ(rx.used(1).len, kHeaderSize);
  EXPECT_EQ(device->counters().rx_bad_buffers, 1u);
  EXPECT_EQ(device->metrics().errors, 1u);
  EXPECT_EQ(device->metrics().requests, 2u);  // the guest's packet, the RST
  EXPECT_EQ(device->metrics().bytes, 0u);
}

TEST_F(VirtioVsockTest, HostileChainsBreakTheQueueNotTheDevice) {
  activate();
  // A transmit chain that loops.
  tx.desc(0, kTxData, 100, kVirtqDescFNext, 1);
  tx.desc(1, kTxData + 100, 100, kVirtqDescFNext, 0);
  tx.publish(0);
  device->notify(1);
  EXPECT_EQ(interrupt.needs_reset, 1);
  device->notify(1);
  EXPECT_EQ(interrupt.needs_reset, 1);

  // A receive buffer outside guest memory.
  rx.desc(0, kRamSize - 100, 2000, kVirtqDescFWrite);
  rx.publish(0);
  UniqueFd client = connect_to(path);
  send_all(client.get(), "CONNECT 5\n");
  pump();
  EXPECT_EQ(interrupt.needs_reset, 2);
  EXPECT_EQ(rx.used_idx(), 0);
  EXPECT_EQ(idle_round(), 0u);
  device->notify(0);
  EXPECT_EQ(interrupt.needs_reset, 2);

  // A reset brings it back.
  device->reset([] {});
  pump();
  activate();
  post_rx(4);
  auto [again, port] = connect_from_host(1234);
  EXPECT_GE(port, VirtioVsock::kFirstHostPort);
}

TEST_F(VirtioVsockTest, IgnoresNotificationsWhileNotActive) {
  device->notify(0);
  device->notify(1);
  device->notify(2);
  EXPECT_EQ(interrupt.used, 0);
  EXPECT_EQ(idle_round(), 0u);
}

// ---- Snapshot and restore ----

// Makes event buffers of `size` bytes (Linux posts 8 of 4) available as chains first, first+1, ...
// on `driver`'s ring in `memory`, each preset to 0xff.
void post_events(const GuestMemory& memory, Driver& driver, uint16_t first, uint16_t count,
                 uint32_t size = vsock::kEventSize) {
  for (uint16_t i = first; i < first + count; ++i) {
    ASSERT_TRUE(memory.write_obj(kEvents + 16ull * i, ~uint32_t{0}));
    driver.desc(i, kEvents + 16ull * i, size, kVirtqDescFWrite);
    driver.publish(i);
  }
}

// The virtio-vsock device of a restored machine (a clone): a copy of the snapshot's RAM, its own
// queues, loop, socket and guest cid.
struct RestoredVsock {
  RestoredVsock(const std::vector<uint8_t>& snapshot_ram, const std::string& uds_path,
                uint64_t guest_cid)
      : ram(snapshot_ram), path(uds_path), device(loop, guest_cid, uds_path, "vsock0") {}
  void restore(const std::vector<uint8_t>& bytes) {
    testing::restore_device(
        bytes, Activation{kFeatures, {&rx_queue, &tx_queue, &ev_queue}, &interrupt}, device);
    ev.set_avail_idx(*ram.memory.read_obj<uint16_t>(ev_queue.config().avail_ring + 2));
  }

  testing::RestoredRam ram;
  std::string path;
  EventLoop loop;
  SplitQueue rx_queue{ram.memory, VirtioVsock::kQueueSize};
  SplitQueue tx_queue{ram.memory, VirtioVsock::kQueueSize};
  SplitQueue ev_queue{ram.memory, VirtioVsock::kQueueSize};
  Driver rx{ram.memory, testing::queue_config(0, VirtioVsock::kQueueSize)};
  Driver ev{ram.memory, testing::queue_config(2, VirtioVsock::kQueueSize)};
  testing::FakeDeviceInterrupt interrupt;
  VirtioVsock device;
};

TEST_F(VirtioVsockTest, ARestoreResetsTheConnectionsWithATransportResetEvent) {
  activate();
  post_rx(16);
  post_events(memory, ev, 0, 8);
  device->notify(2);
  UniqueFd client = connect_from_host(1234).client;
  EXPECT_EQ(ev.used_idx(), 0);  // nothing to tell a driver that was not restored
  const std::vector<uint8_t> bytes =
      testing::save_device({&rx_queue, &tx_queue, &ev_queue}, *device);

  RestoredVsock restored(ram, dir.file("w.sock"), /*guest_cid=*/4);
  restored.restore(bytes);
  EXPECT_EQ(restored.device.connection_count(), 0u);
  ASSERT_EQ(restored.ev.used_idx(), 1);
  EXPECT_EQ(restored.ev.used(0).id, 0u);
  EXPECT_EQ(restored.ev.used(0).len, vsock::kEventSize);
  EXPECT_EQ(*restored.ram.memory.read_obj<uint32_t>(kEvents), vsock::kEventTransportReset);
  EXPECT_EQ(*restored.ram.memory.read_obj<uint32_t>(kEvents + 16), ~uint32_t{0});
  EXPECT_EQ(restored.interrupt.used, 1);
  uint64_t cid = 0;
  restored.device.read_config(0, {reinterpret_cast<uint8_t*>(&cid), sizeof(cid)});
  EXPECT_EQ(cid, 4u);  // what the driver reads again on the event
  // Once told, never again.
  restored.device.notify(2);
  EXPECT_EQ(restored.ev.used_idx(), 1);

  // The next host connection: a REQUEST in the receive ring of each, from their own cid.
  const uint16_t rx_used = rx.used_idx();
  UniqueFd old_side = connect_to(path);
  send_all(old_side.get(), "CONNECT 99\n");
  pump();
  UniqueFd new_side = connect_to(restored.path);
  send_all(new_side.get(), "CONNECT 99\n");
  for (int i = 0; i < 8; ++i) restored.loop.run_once(0);
  ASSERT_EQ(rx.used_idx(), rx_used + 1);
  ASSERT_EQ(restored.rx.used_idx(), rx_used + 1);
  const VirtqUsedElem used = restored.rx.used(rx_used);
  EXPECT_EQ(used.id, rx.used(rx_used).id);
  const auto request = restored.ram.memory.read_obj<Header>(kRxData + used.id * kRxStride);
  ASSERT_TRUE(request.has_value());
  EXPECT_EQ(request->op, vsock::kOpRequest);
  EXPECT_EQ(request->dst_cid, 4u);
  EXPECT_EQ(request->dst_port, 99u);
  // The old connection stays with the old device.
  EXPECT_EQ(device->connection_count(), 2u);
}

TEST_F(VirtioVsockTest, TheResetEventWaitsForAnEventBufferBigEnough) {
  activate();
  post_rx(4);
  RestoredVsock restored(ram, dir.file("w.sock"), kGuestCid);
  restored.restore(testing::save_device({&rx_queue, &tx_queue, &ev_queue}, *device));
  EXPECT_EQ(restored.ev.used_idx(), 0);
  EXPECT_EQ(restored.interrupt.used, 0);
  post_events(restored.ram.memory, restored.ev, 0, 1, /*size=*/2);
  post_events(restored.ram.memory, restored.ev, 1, 2);
  restored.device.notify(2);
  ASSERT_EQ(restored.ev.used_idx(), 2);
  EXPECT_EQ(restored.ev.used(0).len, 0u);  // too small: returned empty
  EXPECT_EQ(restored.ev.used(1).id, 1u);
  EXPECT_EQ(restored.ev.used(1).len, vsock::kEventSize);
  EXPECT_EQ(*restored.ram.memory.read_obj<uint32_t>(kEvents + 16), vsock::kEventTransportReset);
  EXPECT_EQ(restored.interrupt.used, 1);
}

TEST_F(VirtioVsockTest, ARestoreRefusesHeldChainsTheQueuesDoNotHaveAndTruncatedState) {
  activate();
  post_rx(4);
  StateWriter out;
  for (const SplitQueue* queue : {&rx_queue, &tx_queue, &ev_queue}) queue->save_state(out);
  StateWriter own;
  own.put_vector(std::vector<uint16_t>{0});  // a receive chain held, though none is in use
  SplitQueue::save_chains(own, {});
  SplitQueue::save_chains(own, {});
  out.put_bytes(own.bytes());
  RestoredVsock held(ram, dir.file("w.sock"), kGuestCid);
  EXPECT_THAT([&] { held.restore(out.bytes()); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr(
                  "device: corrupt state: the device holds 1 chain(s) of a queue with 0 in use")));

  const std::vector<uint8_t> bytes =
      testing::save_device({&rx_queue, &tx_queue, &ev_queue}, *device);
  for (size_t size = 0; size < bytes.size(); ++size) {
    RestoredVsock restored(ram, dir.file("t.sock"), kGuestCid);
    EXPECT_THROW(restored.restore({bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size)}),
                 Error)
        << size;
  }
}

}  // namespace
}  // namespace vmm::devices::virtio
