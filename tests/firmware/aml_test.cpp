#include "firmware/acpi/aml.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/util/error.hpp"

// Expected bytes are iasl 20200925 output for the ASL shown in each test's comment.
namespace vmm::acpi::aml {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

TEST(AmlNameString, SingleSegmentAndPadding) {
  EXPECT_THAT(name_string("_HID"), ElementsAre('_', 'H', 'I', 'D'));
  EXPECT_THAT(name_string("_SB"), ElementsAre('_', 'S', 'B', '_'));
}

TEST(AmlNameString, RootedAndMultiSegmentPaths) {
  EXPECT_THAT(name_string("\\_SB_"), ElementsAre('\\', '_', 'S', 'B', '_'));
  EXPECT_THAT(name_string("\\_SB_.COM1"),
              ElementsAre('\\', 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'));
  EXPECT_THAT(name_string("_SB_.PCI0.LPC_"),
              ElementsAre(0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'L', 'P', 'C', '_'));
  EXPECT_THAT(name_string("^^DEV"), ElementsAre('^', '^', 'D', 'E', 'V', '_'));
  EXPECT_THAT(name_string("\\"), ElementsAre('\\', 0x00));
}

TEST(AmlNameString, RejectsInvalidNames) {
  EXPECT_THROW(name_string(""), Error);
  EXPECT_THROW(name_string("TOOLONG"), Error);
  EXPECT_THROW(name_string("1ABC"), Error);
  EXPECT_THROW(name_string("ab"), Error);
  EXPECT_THROW(name_string("\\_SB_..COM1"), Error);
  try {
    name_string("\\_SB_.c0m1");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("\\_SB_.c0m1"));
  }
}

TEST(AmlInteger, ShortestEncoding) {
  EXPECT_THAT(integer(0), ElementsAre(0x00));
  EXPECT_THAT(integer(1), ElementsAre(0x01));
  EXPECT_THAT(integer(2), ElementsAre(0x0a, 0x02));
  EXPECT_THAT(integer(0xff), ElementsAre(0x0a, 0xff));
  EXPECT_THAT(integer(0x1234), ElementsAre(0x0b, 0x34, 0x12));
  EXPECT_THAT(integer(0x10000), ElementsAre(0x0c, 0x00, 0x00, 0x01, 0x00));
  EXPECT_THAT(integer(0xffffffff), ElementsAre(0x0c, 0xff, 0xff, 0xff, 0xff));
  // Name (BIGI, 0x123456789A)
  EXPECT_THAT(integer(0x123456789a),
              ElementsAre(0x0e, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x00, 0x00, 0x00));
  EXPECT_THAT(dword(5), ElementsAre(0x0c, 0x05, 0x00, 0x00, 0x00));
}

TEST(AmlString, NullTerminatedAscii) {
  EXPECT_THAT(string("ab"), ElementsAre(0x0d, 'a', 'b', 0x00));
  EXPECT_THAT(string(""), ElementsAre(0x0d, 0x00));
  EXPECT_THROW(string(std::string_view("a\0b", 3)), Error);
  EXPECT_THROW(string("caf\xc3\xa9"), Error);
}

TEST(AmlPkgLength, OneToFourBytes) {
  // The encoded length counts the PkgLength bytes themselves.
  EXPECT_THAT(pkg_length(0), ElementsAre(0x01));
  EXPECT_THAT(pkg_length(62), ElementsAre(0x3f));
  EXPECT_THAT(pkg_length(63), ElementsAre(0x41, 0x04));    // 65 = 0x41
  EXPECT_THAT(pkg_length(0x82), ElementsAre(0x44, 0x08));  // 0x84, as in iasl's Scope (\_SB)
  EXPECT_THAT(pkg_length(0xffd), ElementsAre(0x4f, 0xff));
  EXPECT_THAT(pkg_length(0xffe), ElementsAre(0x81, 0x00, 0x01));  // 0x1001
  EXPECT_THAT(pkg_length(0xffffc), ElementsAre(0x8f, 0xff, 0xff));
  EXPECT_THAT(pkg_length(0xffffd), ElementsAre(0xc1, 0x00, 0x00, 0x01));  // 0x100001
  EXPECT_THAT(pkg_length(0xffffffb), ElementsAre(0xcf, 0xff, 0xff, 0xff));
  EXPECT_THROW(pkg_length(0xffffffc), Error);
}

TEST(AmlPkgLength, LargeBodyRoundTrips) {
  Bytes big(5000, 0xaa);
  Bytes buf = buffer(big);
  // BufferOp, 3-byte PkgLength (5000 data + 3 size bytes + 3 = 0x138e), WordPrefix size 5000.
  ASSERT_GE(buf.size(), 7u);
  EXPECT_THAT(Bytes(buf.begin(), buf.begin() + 7),
              ElementsAre(0x11, 0x8e, 0x38, 0x01, 0x0b, 0x88, 0x13));
  EXPECT_EQ(buf.size(), 1u + 0x138eu);
}

TEST(AmlEisaId, CompressesPnpIds) {
  EXPECT_EQ(eisa_id("PNP0501"), 0x0105d041u);
  EXPECT_EQ(eisa_id("PNP0B00"), 0x000bd041u);
  EXPECT_EQ(eisa_id("PNP0303"), 0x0303d041u);
  EXPECT_EQ(eisa_id("PNP0A03"), 0x030ad041u);
  EXPECT_TRUE(is_eisa_id("PNP0501"));
  EXPECT_FALSE(is_eisa_id("LNRO0005"));
  EXPECT_FALSE(is_eisa_id("pnp0501"));
  EXPECT_FALSE(is_eisa_id("PNP050G"));
  EXPECT_THROW(eisa_id("QEMU0001"), Error);
}

TEST(AmlObjects, NameWithEisaIdHid) {
  // Name (_HID, EisaId ("PNP0501"))
  EXPECT_THAT(name("_HID", dword(eisa_id("PNP0501"))),
              ElementsAre(0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01));
  // Name (_HID, "LNRO0005")
  EXPECT_THAT(
      name("_HID", string("LNRO0005")),
      ElementsAre(0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00));
}

TEST(AmlObjects, S5Package) {
  // Name (_S5, Package () { 5, 0, 0, 0 })
  const Bytes elements[] = {integer(5), integer(0), integer(0), integer(0)};
  EXPECT_THAT(name("_S5_", package(elements)), ElementsAre(0x08, '_', 'S', '5', '_', 0x12, 0x07,
                                                           0x04, 0x0a, 0x05, 0x00, 0x00, 0x00));
}

TEST(AmlObjects, MethodReturningConstant) {
  // Method (_STA, 0, NotSerialized) { Return (0x0F) }
  EXPECT_THAT(method("_STA", 0, return_value(integer(0xf))),
              ElementsAre(0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f));
  EXPECT_THROW(method("_STA", 8, return_value(integer(0))), Error);
}

TEST(AmlObjects, EventMethodNotifiesDevice) {
  // Method (_EVT, 1, NotSerialized) { If (LEqual (Arg0, 3)) { Notify (\_SB.VGEN, 0x80) } }
  // (iasl -on: the notified path kept whole)
  EXPECT_THAT(
      method("_EVT", 1, if_then(equal(arg(0), integer(3)), notify("\\_SB_.VGEN", integer(0x80)))),
      ElementsAreArray<uint8_t>({0x14, 0x19, '_',  'E',  'V',  'T', 0x01,  // Method
                                 0xa0, 0x12,                               // If
                                 0x93, 0x68, 0x0a, 0x03,                   // LEqual
                                 0x86, '\\', 0x2e, '_',  'S',  'B', '_',   // Notify
                                 'V',  'G',  'E',  'N',  0x0a, 0x80}));
}

TEST(AmlObjects, MethodArguments) {
  EXPECT_THAT(arg(0), ElementsAre(0x68));
  EXPECT_THAT(arg(6), ElementsAre(0x6e));
  EXPECT_THROW(arg(7), Error);
}

TEST(AmlResources, SerialPortTemplate) {
  // Name (_CRS, ResourceTemplate () {
  //   IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08)
  //   Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {4} })
  const uint32_t gsi[] = {4};
  const Bytes descriptors[] = {io_port(0x3f8, 0x3f8, 1, 8),
                               extended_interrupt(Trigger::kEdge, Polarity::kActiveHigh, gsi)};
  EXPECT_THAT(name("_CRS", resource_template(descriptors)),
              ElementsAre(0x08, '_', 'C', 'R', 'S', 0x11, 0x16, 0x0a, 0x13,      //
                          0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,        //
                          0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00,  //
                          0x79, 0x00));
}

TEST(AmlResources, VirtioMmioTemplate) {
  // ResourceTemplate () {
  //   Memory32Fixed (ReadWrite, 0xD0000000, 0x00000200)
  //   Interrupt (ResourceConsumer, Level, ActiveLow, Exclusive, ,, ) {5, 300} }
  const uint32_t gsis[] = {5, 300};
  const Bytes descriptors[] = {memory32_fixed(0xd0000000, 0x200),
                               extended_interrupt(Trigger::kLevel, Polarity::kActiveLow, gsis)};
  EXPECT_THAT(resource_template(descriptors),
              ElementsAreArray<uint8_t>({0x11, 0x1e, 0x0a, 0x1b,                          //
                                         0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0,  //
                                         0x00, 0x02, 0x00, 0x00,                          //
                                         0x89, 0x0a, 0x00, 0x05, 0x02, 0x05, 0x00, 0x00,  //
                                         0x00, 0x2c, 0x01, 0x00, 0x00, 0x79, 0x00}));
  EXPECT_THROW(extended_interrupt(Trigger::kEdge, Polarity::kActiveHigh, {}), Error);
}

TEST(AmlObjects, ScopeAndDevice) {
  // Scope (\_SB) { Device (COM1) { Name (_UID, One) } }
  Bytes dev = device("COM1", name("_UID", integer(1)));
  EXPECT_THAT(dev,
              ElementsAre(0x5b, 0x82, 0x0b, 'C', 'O', 'M', '1', 0x08, '_', 'U', 'I', 'D', 0x01));
  Bytes sb = scope("\\_SB_", dev);
  EXPECT_THAT(Bytes(sb.begin(), sb.begin() + 7), ElementsAre(0x10, 0x13, '\\', '_', 'S', 'B', '_'));
  EXPECT_EQ(sb.size(), 2u + 5u + dev.size());
}

TEST(AmlObjects, PackageLimit) {
  std::vector<Bytes> elements(256, integer(0));
  EXPECT_THROW(package(elements), Error);
  elements.pop_back();
  EXPECT_EQ(package(elements)[3], 255);  // PackageOp, 2-byte PkgLength, NumElements
}

}  // namespace
}  // namespace vmm::acpi::aml
