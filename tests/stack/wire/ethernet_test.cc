// Ethernet II header parse and emit.
#include "stack/wire/ethernet.h"

#include <gtest/gtest.h>

#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::Cat;
using testing::MutView;
using testing::View;

const MacAddr kDst{{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
const MacAddr kSrc{{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};

TEST(Ethernet, GoldenLayout) {
  ByteVec frame(kEthernetHeaderLen);
  EmitEthernet(MutView(frame), EthernetHeader{kDst, kSrc, kEtherTypeIpv4});
  EXPECT_EQ(frame, B({0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00}));
}

TEST(Ethernet, RoundTripWithPayload) {
  ByteVec frame(kEthernetHeaderLen);
  EmitEthernet(MutView(frame), EthernetHeader{MacAddr::Broadcast(), kSrc, kEtherTypeArp});
  frame = Cat(frame, B({1, 2, 3}));
  EthernetHeader h;
  Bytes payload;
  ASSERT_EQ(ParseEthernet(View(frame), &h, &payload), Drop::kNone);
  EXPECT_EQ(h.dst, MacAddr::Broadcast());
  EXPECT_EQ(h.src, kSrc);
  EXPECT_EQ(h.ethertype, kEtherTypeArp);
  ASSERT_EQ(payload.size(), 3u);
  EXPECT_EQ(payload[0], std::byte{1});
}

TEST(Ethernet, HeaderOnlyFrameHasEmptyPayload) {
  ByteVec frame(kEthernetHeaderLen);
  EmitEthernet(MutView(frame), EthernetHeader{kDst, kSrc, kEtherTypeIpv4});
  EthernetHeader h;
  Bytes payload;
  ASSERT_EQ(ParseEthernet(View(frame), &h, &payload), Drop::kNone);
  EXPECT_TRUE(payload.empty());
}

TEST(Ethernet, FrameShorterThan14BytesIsTruncated) {
  for (size_t n = 0; n < kEthernetHeaderLen; ++n) {
    ByteVec frame(n);
    EthernetHeader h;
    Bytes payload;
    EXPECT_EQ(ParseEthernet(View(frame), &h, &payload), Drop::kTruncated) << n;
  }
}

TEST(Ethernet, VlanTaggedFrameIsUnknownEtherType) {
  ByteVec frame = B({0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x81, 0x00, 0, 5, 0x08, 0x00});
  EthernetHeader h;
  Bytes payload;
  EXPECT_EQ(ParseEthernet(View(frame), &h, &payload), Drop::kUnknownEtherType);
}

}  // namespace
}  // namespace shake::wire
