// ARP request/reply parse and emit (RFC 826, Ethernet/IPv4 only).
#include "stack/wire/arp.h"

#include <gtest/gtest.h>

#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::Cat;
using testing::MutView;
using testing::View;

ArpPacket Request() {
  ArpPacket p;
  p.op = kArpRequest;
  p.sender_mac = MacAddr{{0x02, 0, 0, 0, 0, 0x01}};
  p.sender_ip = Ipv4Addr(198, 18, 0, 1);
  p.target_ip = Ipv4Addr(198, 18, 0, 2);
  return p;
}

ByteVec Emit(const ArpPacket& p) {
  ByteVec out(kArpLen);
  EmitArp(MutView(out), p);
  return out;
}

TEST(Arp, GoldenRequestLayout) {
  EXPECT_EQ(Emit(Request()), B({0x00, 0x01, 0x08, 0x00, 6, 4,    0x00, 0x01,        //
                                0x02, 0,    0,    0,    0, 0x01, 198,  18,   0, 1,  //
                                0,    0,    0,    0,    0, 0,    198,  18,   0, 2}));
}

TEST(Arp, RoundTripReply) {
  ArpPacket p = Request();
  p.op = kArpReply;
  p.target_mac = MacAddr{{0x02, 0, 0, 0, 0, 0x09}};
  ArpPacket q;
  ASSERT_EQ(ParseArp(View(Emit(p)), &q), Drop::kNone);
  EXPECT_EQ(q.op, kArpReply);
  EXPECT_EQ(q.sender_mac, p.sender_mac);
  EXPECT_EQ(q.sender_ip, p.sender_ip);
  EXPECT_EQ(q.target_mac, p.target_mac);
  EXPECT_EQ(q.target_ip, p.target_ip);
}

TEST(Arp, EthernetPaddingAfter28BytesIsIgnored) {
  ArpPacket q;
  EXPECT_EQ(ParseArp(View(Cat(Emit(Request()), ByteVec(18))), &q), Drop::kNone);
}

TEST(Arp, ShorterThan28BytesIsTruncated) {
  ByteVec b = Emit(Request());
  b.pop_back();
  ArpPacket q;
  EXPECT_EQ(ParseArp(View(b), &q), Drop::kTruncated);
  EXPECT_EQ(ParseArp({}, &q), Drop::kTruncated);
}

TEST(Arp, RejectsOtherHardwareProtocolOrLengths) {
  struct Case {
    const char* name;
    size_t off;
    int value;
  } cases[] = {
      {"hardware type 6 (IEEE 802)", 1, 6},
      {"protocol type IPv6", 2, 0x86},
      {"hardware length 8", 4, 8},
      {"protocol length 16", 5, 16},
      {"opcode 0", 7, 0},
      {"opcode 3 (RARP request)", 7, 3},
  };
  for (const Case& c : cases) {
    ByteVec b = Emit(Request());
    b[c.off] = static_cast<std::byte>(c.value);
    ArpPacket q;
    EXPECT_EQ(ParseArp(View(b), &q), Drop::kBadArp) << c.name;
  }
}

}  // namespace
}  // namespace shake::wire
