#include "base/util/state_archive.hpp"

#include <gtest/gtest.h>

#include "base/util/error.hpp"

namespace vmm {
namespace {

StateArchive two_sections() {
  StateArchive archive;
  StateWriter vcpu;
  vcpu.put<uint64_t>(0x1234);
  archive.add("vcpu0", vcpu.take());
  archive.add("serial", {1, 2, 3});
  return archive;
}

TEST(StateArchive, RoundTripsSectionsByName) {
  const std::vector<uint8_t> bytes = two_sections().serialize();
  const StateArchive back = StateArchive::parse(bytes, "snap/state");
  EXPECT_EQ(back.size(), 2u);
  StateReader vcpu = back.reader("vcpu0");
  EXPECT_EQ(vcpu.get<uint64_t>(), 0x1234u);
  vcpu.expect_end();
  EXPECT_EQ(back.reader("serial").remaining(), 3u);
  EXPECT_FALSE(back.contains("vcpu1"));
  EXPECT_THROW(back.reader("vcpu1"), Error);
}

TEST(StateArchive, RefusesDuplicateSections) {
  StateArchive archive;
  archive.add("a", {});
  EXPECT_THROW(archive.add("a", {}), Error);
}

TEST(StateArchive, EveryFlippedByteOrTruncationIsRefused) {
  const std::vector<uint8_t> good = two_sections().serialize();
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x40;
    EXPECT_THROW(StateArchive::parse(bad, "state"), Error) << "byte " << i;
  }
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(StateArchive::parse(std::span(good).first(n), "state"), Error) << n << " bytes";
  }
}

TEST(StateArchive, NamesTheFileAndTheReason) {
  std::vector<uint8_t> bad = two_sections().serialize();
  bad[20] ^= 1;
  try {
    StateArchive::parse(bad, "/snap/state");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "/snap/state: checksum mismatch (the file is corrupt)");
  }
}

}  // namespace
}  // namespace vmm
