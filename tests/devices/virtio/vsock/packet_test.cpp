#include "devices/virtio/vsock/packet.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vmm::devices::virtio::vsock {
namespace {

constexpr uint64_t kGuestCid = 3;

Header good_header() {
  Header header{};
  header.src_cid = kGuestCid;
  header.dst_cid = kHostCid;
  header.src_port = 1234;
  header.dst_port = 5000;
  header.len = 10;
  header.type = kTypeStream;
  header.op = kOpRw;
  header.buf_alloc = 4096;
  header.fwd_cnt = 7;
  return header;
}

std::vector<uint8_t> bytes_of(const Header& header) {
  std::vector<uint8_t> bytes(kHeaderSize);
  std::memcpy(bytes.data(), &header, kHeaderSize);
  return bytes;
}

ParsedPacket parse(const Header& header, uint32_t payload = 10) {
  return parse_tx_packet(bytes_of(header), kHeaderSize + payload, kGuestCid);
}

TEST(VsockPacketTest, HeaderIsTheSpecsLittleEndianLayout) {
  Header header = good_header();
  const auto bytes = bytes_of(header);
  EXPECT_EQ(bytes[0], kGuestCid);     // src_cid
  EXPECT_EQ(bytes[8], kHostCid);      // dst_cid
  EXPECT_EQ(bytes[16], 1234 & 0xff);  // src_port
  EXPECT_EQ(bytes[20], 5000 & 0xff);  // dst_port
  EXPECT_EQ(bytes[24], 10);           // len
  EXPECT_EQ(bytes[28], kTypeStream);  // type
  EXPECT_EQ(bytes[30], kOpRw);        // op
  EXPECT_EQ(bytes[40], 7);            // fwd_cnt
}

TEST(VsockPacketTest, AcceptsAWellFormedPacket) {
  const ParsedPacket packet = parse(good_header());
  EXPECT_EQ(packet.verdict, Verdict::kAccept);
  EXPECT_EQ(uint32_t{packet.header.src_port}, 1234u);
  EXPECT_EQ(uint32_t{packet.header.dst_port}, 5000u);
  EXPECT_EQ(uint32_t{packet.header.len}, 10u);
  EXPECT_EQ(uint32_t{packet.header.buf_alloc}, 4096u);
}

TEST(VsockPacketTest, RefusesShortChains) {
  const auto bytes = bytes_of(good_header());
  EXPECT_EQ(parse_tx_packet(std::span(bytes).first(43), 43, kGuestCid).verdict, Verdict::kShort);
  EXPECT_EQ(parse_tx_packet({}, 0, kGuestCid).verdict, Verdict::kShort);
  // The bytes read and the chain's size disagree: still short.
  EXPECT_EQ(parse_tx_packet(bytes, 20, kGuestCid).verdict, Verdict::kShort);
}

TEST(VsockPacketTest, RefusesWrongAddresses) {
  Header header = good_header();
  header.src_cid = kGuestCid + 1;
  EXPECT_EQ(parse(header).verdict, Verdict::kWrongAddress);
  header = good_header();
  header.dst_cid = kGuestCid;
  EXPECT_EQ(parse(header).verdict, Verdict::kWrongAddress);
  header.dst_cid = ~uint64_t{0};
  EXPECT_EQ(parse(header).verdict, Verdict::kWrongAddress);
}

TEST(VsockPacketTest, RefusesLengthsBeyondThePayloadOrTheMaximum) {
  Header header = good_header();
  header.len = 11;
  EXPECT_EQ(parse(header, 10).verdict, Verdict::kBadLength);
  header.len = kMaxPayload;
  EXPECT_EQ(parse(header, kMaxPayload).verdict, Verdict::kAccept);
  header.len = kMaxPayload + 1;
  EXPECT_EQ(parse(header, kMaxPayload + 1).verdict, Verdict::kBadLength);
  header.len = ~uint32_t{0};
  EXPECT_EQ(parse(header, ~uint32_t{0} - kHeaderSize).verdict, Verdict::kBadLength);
}

TEST(VsockPacketTest, RefusesOtherSocketTypes) {
  Header header = good_header();
  header.type = 2;  // SEQPACKET: not offered
  EXPECT_EQ(parse(header).verdict, Verdict::kBadType);
  header.type = 0;
  EXPECT_EQ(parse(header).verdict, Verdict::kBadType);
}

TEST(VsockPacketTest, RefusesUnknownOps) {
  Header header = good_header();
  for (uint16_t op : {0, 8, 0xffff}) {
    header.op = op;
    EXPECT_EQ(parse(header).verdict, Verdict::kUnknownOp) << op;
  }
  for (uint16_t op = kOpRequest; op <= kOpCreditRequest; ++op) {
    header.op = op;
    EXPECT_EQ(parse(header).verdict, Verdict::kAccept) << op;
  }
}

TEST(VsockPacketTest, ChecksAddressesBeforeAnsweringWithRst) {
  // A packet that is wrong in every way is dropped silently: no RST to a made-up address.
  Header header = good_header();
  header.src_cid = 99;
  header.type = 9;
  header.op = 99;
  EXPECT_EQ(parse(header).verdict, Verdict::kWrongAddress);
}

}  // namespace
}  // namespace vmm::devices::virtio::vsock
