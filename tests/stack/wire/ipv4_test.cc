// IPv4 header parse and emit, and every malformed length the parser must refuse.
#include "stack/wire/ipv4.h"

#include <gtest/gtest.h>

#include "stack/wire/checksum.h"
#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::Cat;
using testing::MutView;
using testing::View;

Ipv4Header Template() {
  Ipv4Header h;
  h.total_len = 28;
  h.ident = 0x1234;
  h.dont_fragment = true;
  h.protocol = kProtoTcp;
  h.src = Ipv4Addr(198, 18, 0, 1);
  h.dst = Ipv4Addr(198, 18, 0, 2);
  return h;
}

// A header from Template() followed by 8 payload bytes.
ByteVec Packet(const Ipv4Header& h = Template()) {
  ByteVec p(kIpv4MinHeaderLen);
  EmitIpv4(MutView(p), h);
  return Cat(p, B({1, 2, 3, 4, 5, 6, 7, 8}));
}

void Refix(ByteVec& p, size_t header_len) {
  p[10] = p[11] = std::byte{0};
  const uint16_t c = InternetChecksum(View(p).first(header_len));
  p[10] = static_cast<std::byte>(c >> 8);
  p[11] = static_cast<std::byte>(c & 0xff);
}

Drop Parse(const ByteVec& p, Ipv4Header* h = nullptr, Bytes* payload = nullptr,
           bool verify = true) {
  Ipv4Header hh;
  Bytes pp;
  return ParseIpv4(View(p), h ? h : &hh, payload ? payload : &pp, verify);
}

TEST(Ipv4, GoldenHeaderMatchesTextbookExample) {
  Ipv4Header h;
  h.total_len = 0x73;
  h.ident = 0;
  h.dont_fragment = true;
  h.ttl = 64;
  h.protocol = kProtoUdp;
  h.src = Ipv4Addr(192, 168, 0, 1);
  h.dst = Ipv4Addr(192, 168, 0, 199);
  ByteVec out(20);
  EmitIpv4(MutView(out), h);
  EXPECT_EQ(out, B({0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                    0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}));
}

TEST(Ipv4, RoundTrip) {
  Ipv4Header in = Template();
  in.tos = 0x10;
  in.ttl = 3;
  const ByteVec packet = Packet(in);
  Ipv4Header out;
  Bytes payload;
  ASSERT_EQ(Parse(packet, &out, &payload), Drop::kNone);
  EXPECT_EQ(out.header_len, 20);
  EXPECT_EQ(out.tos, 0x10);
  EXPECT_EQ(out.total_len, 28);
  EXPECT_EQ(out.ident, 0x1234);
  EXPECT_TRUE(out.dont_fragment);
  EXPECT_FALSE(out.more_fragments);
  EXPECT_EQ(out.frag_offset, 0);
  EXPECT_EQ(out.ttl, 3);
  EXPECT_EQ(out.protocol, kProtoTcp);
  EXPECT_EQ(out.src, in.src);
  EXPECT_EQ(out.dst, in.dst);
  EXPECT_FALSE(out.is_fragment());
  ASSERT_EQ(payload.size(), 8u);
  EXPECT_EQ(payload[0], std::byte{1});
}

TEST(Ipv4, RoundTripFragmentFields) {
  Ipv4Header in = Template();
  in.dont_fragment = false;
  in.more_fragments = true;
  in.frag_offset = 8 * 0x1fff;  // the largest offset the 13-bit field holds
  const ByteVec p = Packet(in);
  EXPECT_EQ(p[6], std::byte{0x3f});
  EXPECT_EQ(p[7], std::byte{0xff});
  Ipv4Header out;
  ASSERT_EQ(Parse(p, &out), Drop::kNone);
  EXPECT_FALSE(out.dont_fragment);
  EXPECT_TRUE(out.more_fragments);
  EXPECT_EQ(out.frag_offset, 8 * 0x1fff);
  EXPECT_TRUE(out.is_fragment());
}

TEST(Ipv4, TrailingLinkPaddingIsIgnored) {
  ByteVec p = Cat(Packet(), ByteVec(18));  // padded up to Ethernet's minimum
  Bytes payload;
  ASSERT_EQ(Parse(p, nullptr, &payload), Drop::kNone);
  EXPECT_EQ(payload.size(), 8u);
}

TEST(Ipv4, OptionsAreSkipped) {
  Ipv4Header h = Template();
  h.total_len = 32;
  ByteVec p = Packet(h);
  // Insert a 4-byte option area (NOP, NOP, NOP, EOL) and set IHL to 6.
  const ByteVec opts = B({1, 1, 1, 0});
  p.insert(p.begin() + 20, opts.begin(), opts.end());
  p[0] = std::byte{0x46};
  Refix(p, 24);
  Ipv4Header out;
  Bytes payload;
  ASSERT_EQ(Parse(p, &out, &payload), Drop::kNone);
  EXPECT_EQ(out.header_len, 24);
  ASSERT_EQ(payload.size(), 8u);
  EXPECT_EQ(payload[0], std::byte{1});
}

TEST(Ipv4, ShorterThan20BytesIsTruncated) {
  ByteVec p = Packet();
  p.resize(19);
  EXPECT_EQ(Parse(p), Drop::kTruncated);
  EXPECT_EQ(Parse(ByteVec{}), Drop::kTruncated);
}

TEST(Ipv4, VersionOtherThan4) {
  ByteVec p = Packet();
  p[0] = std::byte{0x65};
  Refix(p, 20);
  EXPECT_EQ(Parse(p), Drop::kBadIpVersion);
}

TEST(Ipv4, IhlBelow5) {
  for (int ihl = 0; ihl < 5; ++ihl) {
    ByteVec p = Packet();
    p[0] = static_cast<std::byte>(0x40 | ihl);
    EXPECT_EQ(Parse(p), Drop::kBadIpHeaderLen) << "IHL " << ihl;
  }
}

TEST(Ipv4, IhlPastEndOfPacket) {
  ByteVec p = Packet();  // 28 bytes; IHL 8 claims 32
  p[0] = std::byte{0x48};
  EXPECT_EQ(Parse(p), Drop::kBadIpHeaderLen);
}

TEST(Ipv4, TotalLengthAboveFrame) {
  Ipv4Header h = Template();
  h.total_len = 29;
  EXPECT_EQ(Parse(Packet(h)), Drop::kBadIpTotalLen);
}

TEST(Ipv4, TotalLengthBelowHeaderLength) {
  Ipv4Header h = Template();
  h.total_len = 19;
  EXPECT_EQ(Parse(Packet(h)), Drop::kBadIpTotalLen);
}

TEST(Ipv4, TotalLengthEqualToHeaderGivesEmptyPayload) {
  Ipv4Header h = Template();
  h.total_len = 20;
  Bytes payload;
  ASSERT_EQ(Parse(Packet(h), nullptr, &payload), Drop::kNone);
  EXPECT_TRUE(payload.empty());
}

TEST(Ipv4, BadChecksumIsRefusedUnlessVerificationIsOff) {
  ByteVec p = Packet();
  p[8] = std::byte{63};  // change the TTL without fixing the checksum
  EXPECT_EQ(Parse(p), Drop::kBadIpChecksum);
  EXPECT_EQ(Parse(p, nullptr, nullptr, /*verify=*/false), Drop::kNone);
}

}  // namespace
}  // namespace shake::wire
