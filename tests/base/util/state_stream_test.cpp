#include "base/util/state_stream.hpp"

#include <gtest/gtest.h>

#include "base/util/error.hpp"

namespace vmm {
namespace {

TEST(StateStream, ReadsBackWhatWasWrittenInOrder) {
  StateWriter out;
  out.put<uint32_t>(0xdeadbeef);
  out.put_bool(true);
  out.put_string("vda");
  out.put_vector(std::vector<uint16_t>{1, 2, 65535});
  out.put<uint64_t>(7);

  StateReader in(out.bytes(), "test");
  EXPECT_EQ(in.get<uint32_t>(), 0xdeadbeefu);
  EXPECT_TRUE(in.get_bool());
  EXPECT_EQ(in.get_string(16), "vda");
  EXPECT_EQ(in.get_vector<uint16_t>(3), (std::vector<uint16_t>{1, 2, 65535}));
  EXPECT_EQ(in.get_at_most<uint64_t>(7, "seven"), 7u);
  in.expect_end();
}

TEST(StateStream, TruncatedStateThrowsAndNamesTheState) {
  StateWriter out;
  out.put<uint16_t>(1);
  StateReader in(out.bytes(), "vCPU 3");
  try {
    in.get<uint32_t>();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vCPU 3: corrupt state: truncated"), std::string::npos)
        << e.what();
  }
}

TEST(StateStream, RefusesOversizedFieldsBadFlagsAndTrailingBytes) {
  StateWriter out;
  out.put_string("a long name");
  EXPECT_THROW(StateReader(out.bytes(), "t").get_string(4), Error);

  StateWriter flag;
  flag.put<uint8_t>(2);
  EXPECT_THROW(StateReader(flag.bytes(), "t").get_bool(), Error);

  StateWriter count;
  count.put<uint32_t>(9);
  EXPECT_THROW(StateReader(count.bytes(), "t").get_at_most<uint32_t>(8, "queue index"), Error);

  // A length that promises more bytes than there are.
  StateWriter length;
  length.put<uint32_t>(100);
  length.put<uint8_t>(1);
  EXPECT_THROW(StateReader(length.bytes(), "t").get_bytes(1000), Error);

  // A list whose size is not a whole number of entries.
  StateWriter odd;
  odd.put_bytes(std::vector<uint8_t>{1, 2, 3});
  EXPECT_THROW(StateReader(odd.bytes(), "t").get_vector<uint16_t>(10), Error);

  StateWriter trailing;
  trailing.put<uint16_t>(1);
  trailing.put<uint8_t>(0);
  StateReader in(trailing.bytes(), "t");
  in.get<uint16_t>();
  EXPECT_THROW(in.expect_end(), Error);
}

}  // namespace
}  // namespace vmm
