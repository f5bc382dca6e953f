#include "devices/vhost_user/message.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/devices/vhost_user/backend_error.hpp"
#include "tests/devices/vhost_user/reply_message.hpp"

namespace vmm::devices::vhost_user {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Replies recorded from Debian 12's C virtiofsd (/usr/lib/qemu/virtiofsd, "virtiofsd version
// 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)", libvhost-user) by a throwaway script that spoke the
// protocol to it on its --socket-path: SET_OWNER, then each request below in this order, with
// SET_PROTOCOL_FEATURES of MQ|REPLY_ACK, a 1 MiB memfd as the memory table, ring 0 of 128 entries
// at base 7, call and kick eventfds and the ring enabled before GET_VRING_BASE.
constexpr std::array<uint8_t, 20> kGetFeaturesReply = {0x01, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
                                                       0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                       0x00, 0x75, 0x01, 0x00, 0x00, 0x00};
constexpr std::array<uint8_t, 20> kGetProtocolFeaturesReply = {
    0x0f, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x08, 0x00,
    0x00, 0x00, 0x2b, 0x8c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
constexpr std::array<uint8_t, 20> kGetQueueNumReply = {0x11, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
                                                       0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x00,
                                                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
// The ack of SET_MEM_TABLE sent with NEED_REPLY once REPLY_ACK was on: status 0.
constexpr std::array<uint8_t, 20> kSetMemTableAck = {0x05, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
                                                     0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                     0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
constexpr std::array<uint8_t, 20> kGetVringBaseReply = {0x0b, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00,
                                                        0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
                                                        0x00, 0x00, 0x07, 0x00, 0x00, 0x00};
// GET_CONFIG of 8 bytes at 0 to a backend without the CONFIG protocol feature: libvhost-user's
// refusal, an empty payload.
constexpr std::array<uint8_t, 12> kGetConfigRefusal = {0x18, 0x00, 0x00, 0x00, 0x05, 0x00,
                                                       0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

template <typename T>
T field_at(const std::vector<uint8_t>& bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

using testing::error_of;
using testing::reply;

TEST(VhostUserMessage, ParsesVirtiofsdRecordedReplies) {
  EXPECT_EQ(
      decode_u64(Request::kGetFeatures, parse_reply(Request::kGetFeatures, kGetFeaturesReply)),
      0x0000'0001'7500'0000u);  // VERSION_1, PROTOCOL_FEATURES, EVENT_IDX, INDIRECT_DESC, ...
  const uint64_t protocol =
      decode_u64(Request::kGetProtocolFeatures,
                 parse_reply(Request::kGetProtocolFeatures, kGetProtocolFeaturesReply));
  EXPECT_EQ(protocol, 0x8c2bu);
  EXPECT_NE(protocol & kProtocolFeatureMq, 0u);
  EXPECT_NE(protocol & kProtocolFeatureReplyAck, 0u);
  EXPECT_EQ(protocol & kProtocolFeatureConfig, 0u);
  EXPECT_EQ(decode_queue_num(parse_reply(Request::kGetQueueNum, kGetQueueNumReply)), 2);
  EXPECT_NO_THROW(
      check_ack(Request::kSetMemTable, parse_reply(Request::kSetMemTable, kSetMemTableAck)));
  EXPECT_EQ(decode_vring_base(0, parse_reply(Request::kGetVringBase, kGetVringBaseReply)), 7u);
  EXPECT_EQ(
      error_of([] { decode_config(0, 8, parse_reply(Request::kGetConfig, kGetConfigRefusal)); }),
      "GET_CONFIG refused (an empty reply)");
}

TEST(VhostUserMessage, HeaderLayout) {
  // Spec: u32 request, u32 flags (version 1 in bits 0-1, NEED_REPLY 0x8), u32 payload size.
  EXPECT_THAT(encode_request(Request::kSetOwner, {}),
              ElementsAreArray({0x03, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_THAT(encode_request(Request::kSetFeatures, u64_payload(0x0000'0001'4000'0000), true),
              ElementsAreArray({0x02, 0, 0, 0,    0x09, 0, 0, 0, 0x08, 0, 0, 0,  //
                                0,    0, 0, 0x40, 0x01, 0, 0, 0}));
}

TEST(VhostUserMessage, PayloadLayouts) {
  // A vring state: u32 index, u32 num.
  EXPECT_THAT(vring_state_payload(1, 256), ElementsAreArray({1, 0, 0, 0, 0, 1, 0, 0}));
  // A vring address: u32 index, u32 flags, u64 descriptor, used, available, log.
  const auto address = vring_address_payload({.index = 1,
                                              .desc_user_address = 0x1122,
                                              .used_user_address = 0x3344,
                                              .avail_user_address = 0x5566});
  ASSERT_EQ(address.size(), 40u);
  EXPECT_EQ(field_at<uint32_t>(address, 0), 1u);
  EXPECT_EQ(field_at<uint32_t>(address, 4), 0u);  // no VHOST_VRING_F_LOG
  EXPECT_EQ(field_at<uint64_t>(address, 8), 0x1122u);
  EXPECT_EQ(field_at<uint64_t>(address, 16), 0x3344u);
  EXPECT_EQ(field_at<uint64_t>(address, 24), 0x5566u);
  EXPECT_EQ(field_at<uint64_t>(address, 32), 0u);  // log address
  // The memory regions description: u32 count, u32 padding, then per region u64 guest address,
  // size, user address, mmap offset.
  const std::array regions = {MemoryRegion{0x0, 0x1000, 0x7f00'0000'0000, 0},
                              MemoryRegion{0x1'0000'0000, 0x2000, 0x7f00'1000'0000, 0x1000}};
  const auto table = memory_table_payload(regions);
  ASSERT_EQ(table.size(), 8u + 2 * 32);
  EXPECT_EQ(field_at<uint32_t>(table, 0), 2u);
  EXPECT_EQ(field_at<uint32_t>(table, 4), 0u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 0), 0u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 8), 0x1000u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 32 + 0), 0x1'0000'0000u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 32 + 8), 0x2000u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 32 + 16), 0x7f00'1000'0000u);
  EXPECT_EQ(field_at<uint64_t>(table, 8 + 32 + 24), 0x1000u);
  // A ring's fd message: the index in the low byte, bit 8 when no fd comes with it.
  EXPECT_THAT(vring_fd_payload(3, true), ElementsAreArray({3, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_THAT(vring_fd_payload(3, false), ElementsAreArray({3, 1, 0, 0, 0, 0, 0, 0}));
  // The device config space: u32 offset, u32 size, u32 flags, then the bytes.
  const std::array<uint8_t, 2> data = {0xaa, 0xbb};
  EXPECT_THAT(config_payload(4, data),
              ElementsAreArray({4, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb}));
}

TEST(VhostUserMessage, EncodersRefuseWhatTheProtocolCantCarry) {
  EXPECT_THROW(memory_table_payload({}), Error);
  const std::vector<MemoryRegion> nine(kMaxMemoryRegions + 1, MemoryRegion{0, 1, 0, 0});
  EXPECT_THROW(memory_table_payload(nine), Error);
  EXPECT_THROW(vring_fd_payload(256, true), Error);
  const std::vector<uint8_t> too_big(kMaxConfigSize + 1);
  EXPECT_THROW(config_payload(0, too_big), Error);
}

TEST(VhostUserMessage, RefusesAReplyToAnotherRequest) {
  EXPECT_EQ(error_of([] { parse_reply(Request::kGetFeatures, kGetProtocolFeaturesReply); }),
            "answered GET_FEATURES with GET_PROTOCOL_FEATURES");
  EXPECT_EQ(error_of([] {
              parse_reply(Request::kGetFeatures,
                          reply(static_cast<Request>(99), {0, 0, 0, 0, 0, 0, 0, 0}));
            }),
            "answered GET_FEATURES with request 99");
}

TEST(VhostUserMessage, RefusesWrongFlags) {
  const std::vector<uint8_t> payload(8);
  // REPLY missing, version 0 or 2, NEED_REPLY echoed back.
  for (const uint32_t flags : {0x1u, 0x4u, 0x6u, 0xdu}) {
    EXPECT_THAT(error_of([&] {
                  parse_reply(Request::kGetFeatures, reply(Request::kGetFeatures, payload, flags));
                }),
                HasSubstr("flags"))
        << flags;
  }
}

TEST(VhostUserMessage, RefusesSizesTheRequestDoesNotAllow) {
  EXPECT_THAT(error_of([] {
                parse_reply(Request::kGetFeatures, reply(Request::kGetFeatures, {1, 2, 3, 4}));
              }),
              HasSubstr("payload size 4"));
  EXPECT_THAT(error_of([] {
                parse_reply(Request::kGetFeatures,
                            reply(Request::kGetFeatures, std::vector<uint8_t>(16)));
              }),
              HasSubstr("payload size 16"));
  // A header claiming more than the largest payload (checked before anything is read).
  auto huge = reply(Request::kGetConfig, {});
  huge[8] = 0xff;
  huge[9] = 0xff;
  EXPECT_THAT(error_of([&] { parse_reply(Request::kGetConfig, huge); }),
              HasSubstr("payload size 65535"));
  // A message shorter than its header, or with fewer (more) payload bytes than the header says.
  EXPECT_THAT(
      error_of([] { parse_reply(Request::kGetFeatures, std::span(kGetFeaturesReply).first(11)); }),
      HasSubstr("shorter than a header"));
  EXPECT_THAT(
      error_of([] { parse_reply(Request::kGetFeatures, std::span(kGetFeaturesReply).first(19)); }),
      HasSubstr("7 payload bytes, header says 8"));
  auto longer = std::vector<uint8_t>(kGetFeaturesReply.begin(), kGetFeaturesReply.end());
  longer.push_back(0);
  EXPECT_THAT(error_of([&] { parse_reply(Request::kGetFeatures, longer); }),
              HasSubstr("9 payload bytes, header says 8"));
}

TEST(VhostUserMessage, ChecksQueueCountAndRingBase) {
  EXPECT_THAT(error_of([] { decode_queue_num(u64_payload(0)); }), HasSubstr("0 queues"));
  EXPECT_THAT(error_of([] { decode_queue_num(u64_payload(65536)); }), HasSubstr("65536 queues"));
  EXPECT_EQ(decode_queue_num(u64_payload(65535)), 65535);
  EXPECT_EQ(error_of([] { decode_vring_base(1, vring_state_payload(0, 5)); }),
            "reply to GET_VRING_BASE 1: about ring 0");
  EXPECT_THAT(error_of([] { decode_vring_base(0, vring_state_payload(0, 0x10000)); }),
              HasSubstr("base 65536"));
  EXPECT_EQ(decode_vring_base(2, vring_state_payload(2, 0xffff)), 0xffffu);
}

TEST(VhostUserMessage, ChecksConfigReplies) {
  const std::array<uint8_t, 4> data = {1, 2, 3, 4};
  EXPECT_THAT(decode_config(8, 4, config_payload(8, data)), ElementsAreArray(data));
  // Larger than asked, another offset, fewer bytes than its header says, no header.
  const std::array<uint8_t, 5> more = {1, 2, 3, 4, 5};
  EXPECT_THAT(error_of([&] { decode_config(8, 4, config_payload(8, more)); }),
              HasSubstr("5 bytes at offset 8, asked for 4 bytes at offset 8"));
  EXPECT_THAT(error_of([&] { decode_config(0, 4, config_payload(8, data)); }),
              HasSubstr("at offset 8"));
  auto short_data = config_payload(8, data);
  short_data.pop_back();
  EXPECT_THAT(error_of([&] { decode_config(8, 4, short_data); }),
              HasSubstr("3 config bytes, its header says 4"));
  EXPECT_THAT(error_of([] { decode_config(0, 4, std::vector<uint8_t>(11)); }),
              HasSubstr("shorter than its header"));
}

TEST(VhostUserMessage, AckIsZero) {
  EXPECT_NO_THROW(check_ack(Request::kSetVringNum, u64_payload(0)));
  EXPECT_EQ(error_of([] { check_ack(Request::kSetVringNum, u64_payload(1)); }),
            "SET_VRING_NUM refused (status 1)");
}

}  // namespace
}  // namespace vmm::devices::vhost_user
