// TCP header and options: Linux's option layouts byte for byte, round trips, malformed headers.
#include "stack/wire/tcp.h"

#include <gtest/gtest.h>

#include <random>

#include "stack/wire/checksum.h"
#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::Cat;
using testing::MutView;
using testing::View;

const Ipv4Addr kSrc(198, 18, 0, 1);
const Ipv4Addr kDst(198, 18, 0, 2);

TcpHeader Template() {
  TcpHeader h;
  h.src_port = 40000;
  h.dst_port = 80;
  h.seq = SeqNum(0x01020304);
  h.ack = SeqNum(0xa0b0c0d0);
  h.flags = tcpflag::kAck;
  h.window = 64240;
  return h;
}

// Header + payload with a valid checksum.
ByteVec Segment(const TcpHeader& h, const ByteVec& payload = {}) {
  ByteVec seg(TcpHeaderLen(h.options));
  EXPECT_EQ(EmitTcpHeader(MutView(seg), h), seg.size());
  seg = Cat(seg, payload);
  FillTcpChecksum(MutView(seg), kSrc, kDst);
  return seg;
}

// A 20-byte header followed by raw option bytes (a multiple of 4) and a payload.
ByteVec RawOptions(const ByteVec& options, const ByteVec& payload = {}) {
  ByteVec seg = Cat(Segment(Template()), options);
  seg[12] = static_cast<std::byte>(((20 + options.size()) / 4) << 4);
  seg = Cat(seg, payload);
  FillTcpChecksum(MutView(seg), kSrc, kDst);
  return seg;
}

ByteVec OptionBytes(const TcpOptions& o) {
  TcpHeader h = Template();
  h.options = o;
  const ByteVec seg = Segment(h);
  return ByteVec(seg.begin() + 20, seg.end());
}

Drop Parse(const ByteVec& seg, TcpHeader* out = nullptr, Bytes* payload = nullptr,
           bool verify = true) {
  TcpHeader h;
  Bytes p;
  return ParseTcp(View(seg), kSrc, kDst, out ? out : &h, payload ? payload : &p, verify);
}

// --- Golden layouts: what Linux puts on the wire ---------------------------------------------

TEST(TcpEmit, SynWithEverythingIsMssSackOkTsNopWscale) {
  TcpOptions o;
  o.mss = 1460;
  o.sack_permitted = true;
  o.timestamp = TcpTimestamp{0x11223344, 0};
  o.window_scale = 7;
  EXPECT_EQ(TcpHeaderLen(o), 40u);
  EXPECT_EQ(OptionBytes(o), B({0x02, 0x04, 0x05, 0xb4,                          // mss 1460
                               0x04, 0x02,                                      // sackOK
                               0x08, 0x0a, 0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0,  // TS
                               0x01, 0x03, 0x03, 0x07}));                       // nop, wscale 7
}

TEST(TcpEmit, SynWithoutTimestampsIsMssNopNopSackOkNopWscale) {
  TcpOptions o;
  o.mss = 1460;
  o.sack_permitted = true;
  o.window_scale = 7;
  EXPECT_EQ(TcpHeaderLen(o), 32u);
  EXPECT_EQ(OptionBytes(o),
            B({0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02, 0x01, 0x03, 0x03, 0x07}));
}

TEST(TcpEmit, SynWithMssAndWscaleOnly) {
  TcpOptions o;
  o.mss = 536;
  o.window_scale = 0;
  EXPECT_EQ(OptionBytes(o), B({0x02, 0x04, 0x02, 0x18, 0x01, 0x03, 0x03, 0x00}));
}

TEST(TcpEmit, SynWithMssOnly) {
  TcpOptions o;
  o.mss = 1460;
  EXPECT_EQ(TcpHeaderLen(o), 24u);
  EXPECT_EQ(OptionBytes(o), B({0x02, 0x04, 0x05, 0xb4}));
}

TEST(TcpEmit, SynWithTimestampsButNoSackIsMssNopNopTs) {
  TcpOptions o;
  o.mss = 1460;
  o.timestamp = TcpTimestamp{1, 2};
  o.window_scale = 2;
  EXPECT_EQ(OptionBytes(o), B({0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x08, 0x0a, 0,    0,
                               0,    1,    0,    0,    0,    2,    0x01, 0x03, 0x03, 0x02}));
}

TEST(TcpEmit, NoOptionsIs20Bytes) {
  EXPECT_EQ(TcpHeaderLen(TcpOptions{}), 20u);
  EXPECT_TRUE(OptionBytes(TcpOptions{}).empty());
}

TEST(TcpEmit, DataSegmentWithTimestampIsNopNopTs) {
  TcpOptions o;
  o.timestamp = TcpTimestamp{0xdeadbeef, 0x01020304};
  EXPECT_EQ(TcpHeaderLen(o), 32u);
  EXPECT_EQ(OptionBytes(o),
            B({0x01, 0x01, 0x08, 0x0a, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04}));
}

TEST(TcpEmit, TimestampThenOneSackBlock) {
  TcpOptions o;
  o.timestamp = TcpTimestamp{5, 6};
  o.sack[0] = SackBlock{SeqNum(1000), SeqNum(2000)};
  o.sack_count = 1;
  EXPECT_EQ(OptionBytes(o), B({0x01, 0x01, 0x08, 0x0a, 0, 0, 0,    5,    0, 0, 0,    6,  //
                               0x01, 0x01, 0x05, 0x0a, 0, 0, 0x03, 0xe8, 0, 0, 0x07, 0xd0}));
}

TEST(TcpEmit, WithTimestampsAtMostThreeSackBlocksFit) {
  TcpOptions o;
  o.timestamp = TcpTimestamp{5, 6};
  for (uint32_t i = 0; i < 4; ++i) o.sack[i] = SackBlock{SeqNum(100 * i), SeqNum(100 * i + 50)};
  o.sack_count = 4;
  EXPECT_EQ(TcpHeaderLen(o), 20u + 12 + 4 + 3 * 8);
  const ByteVec opts = OptionBytes(o);
  ASSERT_EQ(opts.size(), 40u);
  EXPECT_EQ(opts[15], std::byte{2 + 3 * 8});
  TcpHeader parsed;
  ASSERT_EQ(Parse(Segment([&] {
                    TcpHeader h = Template();
                    h.options = o;
                    return h;
                  }()),
                  &parsed),
            Drop::kNone);
  EXPECT_EQ(parsed.options.sack_count, 3);
  EXPECT_EQ(parsed.options.sack[2], o.sack[2]);
}

TEST(TcpEmit, WithoutTimestampsFourSackBlocksFit) {
  TcpOptions o;
  for (uint32_t i = 0; i < 4; ++i) o.sack[i] = SackBlock{SeqNum(i), SeqNum(i + 1)};
  o.sack_count = 4;
  EXPECT_EQ(TcpHeaderLen(o), 20u + 4 + 32);
  const ByteVec opts = OptionBytes(o);
  EXPECT_EQ(ByteVec(opts.begin(), opts.begin() + 4), B({0x01, 0x01, 0x05, 0x22}));
}

TEST(TcpEmit, FixedHeaderFieldsAndDataOffset) {
  TcpHeader h = Template();
  h.flags = tcpflag::kSyn | tcpflag::kAck | tcpflag::kEce;
  h.urgent = 0x0102;
  h.options.mss = 1460;
  const ByteVec seg = Segment(h);
  EXPECT_EQ(ByteVec(seg.begin(), seg.begin() + 16),
            B({0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0xa0, 0xb0, 0xc0, 0xd0, 0x60, 0x52,
               0xfa, 0xf0}));
  EXPECT_EQ(seg[18], std::byte{0x01});
  EXPECT_EQ(seg[19], std::byte{0x02});
}

// --- Round trips -----------------------------------------------------------------------------

TEST(TcpRoundTrip, FixedFieldsAndPayload) {
  TcpHeader h = Template();
  h.flags = tcpflag::kPsh | tcpflag::kAck | tcpflag::kFin | tcpflag::kCwr;
  h.urgent = 7;
  const ByteVec seg = Segment(h, B({'h', 'i'}));
  TcpHeader out;
  Bytes payload;
  ASSERT_EQ(Parse(seg, &out, &payload), Drop::kNone);
  EXPECT_EQ(out.src_port, h.src_port);
  EXPECT_EQ(out.dst_port, h.dst_port);
  EXPECT_EQ(out.seq, h.seq);
  EXPECT_EQ(out.ack, h.ack);
  EXPECT_EQ(out.flags, h.flags);
  EXPECT_TRUE(out.has(tcpflag::kFin));
  EXPECT_EQ(out.window, h.window);
  EXPECT_EQ(out.urgent, 7);
  EXPECT_EQ(out.options, TcpOptions{});
  ASSERT_EQ(payload.size(), 2u);
  EXPECT_EQ(payload[1], std::byte{'i'});
}

TEST(TcpRoundTrip, EveryCombinationOfOptionsThatFits) {
  std::mt19937 rng(7323);
  int checked = 0;
  for (int mask = 0; mask < 16; ++mask) {
    for (uint8_t blocks = 0; blocks <= 4; ++blocks) {
      TcpOptions o;
      if (mask & 1) o.mss = static_cast<uint16_t>(rng());
      if (mask & 2) o.window_scale = static_cast<uint8_t>(rng() % 15);
      if (mask & 4) o.sack_permitted = true;
      if (mask & 8)
        o.timestamp = TcpTimestamp{static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())};
      for (uint8_t i = 0; i < blocks; ++i) {
        const uint32_t left = static_cast<uint32_t>(rng());
        o.sack[i] = SackBlock{SeqNum(left), SeqNum(left + 1448)};
      }
      o.sack_count = blocks;
      TcpHeader h = Template();
      h.options = o;
      const ByteVec seg = Segment(h);
      ASSERT_EQ(seg.size() % 4, 0u);
      ASSERT_LE(seg.size(), 60u);
      // Linux's group sizes: MSS 4, TS 12 (with SACK-permitted folded in), SACK-permitted 4,
      // window scale 4, SACK 4 + 8 per block.
      const size_t fixed = (o.mss ? 4 : 0) + (o.timestamp ? 12 : 0) +
                           (o.sack_permitted && !o.timestamp ? 4 : 0) + (o.window_scale ? 4 : 0);
      if (blocks > 0 && fixed + 4 + 8u * blocks > kTcpMaxOptionsLen) {
        continue;  // some SACK blocks are left out: covered by the tests above
      }
      ASSERT_EQ(seg.size(), 20 + fixed + (blocks > 0 ? 4 + 8u * blocks : 0));
      TcpHeader out;
      ASSERT_EQ(Parse(seg, &out), Drop::kNone) << "mask " << mask << " blocks " << int{blocks};
      EXPECT_EQ(out.options, o) << "mask " << mask << " blocks " << int{blocks};
      ++checked;
    }
  }
  EXPECT_GT(checked, 60);
}

// --- Malformed headers -----------------------------------------------------------------------

TEST(TcpParse, ShorterThan20BytesIsTruncated) {
  ByteVec seg = Segment(Template());
  seg.resize(19);
  EXPECT_EQ(Parse(seg), Drop::kTruncated);
  EXPECT_EQ(Parse(ByteVec{}), Drop::kTruncated);
}

TEST(TcpParse, DataOffsetBelow5) {
  for (int off = 0; off < 5; ++off) {
    ByteVec seg = Segment(Template(), B({1, 2, 3, 4, 5, 6, 7, 8}));
    seg[12] = static_cast<std::byte>(off << 4);
    FillTcpChecksum(MutView(seg), kSrc, kDst);
    EXPECT_EQ(Parse(seg), Drop::kBadTcpHeaderLen) << "data offset " << off;
  }
}

TEST(TcpParse, DataOffsetPastEndOfSegment) {
  ByteVec seg = Segment(Template(), B({1, 1, 1, 1}));  // 24 bytes; offset 7 claims 28
  seg[12] = std::byte{0x70};
  FillTcpChecksum(MutView(seg), kSrc, kDst);
  EXPECT_EQ(Parse(seg), Drop::kBadTcpHeaderLen);
}

TEST(TcpParse, OptionLengthZero) {
  EXPECT_EQ(Parse(RawOptions(B({0x02, 0x00, 0x05, 0xb4}))), Drop::kBadTcpOption);
}

TEST(TcpParse, OptionLengthOne) {
  EXPECT_EQ(Parse(RawOptions(B({0x01, 0x01, 0x08, 0x01}))), Drop::kBadTcpOption);
}

TEST(TcpParse, OptionLengthPastEndOfOptions) {
  // A timestamp claiming 10 bytes in a 4-byte area; the payload after it must not be read.
  EXPECT_EQ(Parse(RawOptions(B({0x01, 0x01, 0x08, 0x0a}), ByteVec(8))), Drop::kBadTcpOption);
}

TEST(TcpParse, OptionKindWithoutLengthByteAtEnd) {
  EXPECT_EQ(Parse(RawOptions(B({0x01, 0x01, 0x01, 0x02}))), Drop::kBadTcpOption);
}

TEST(TcpParse, KnownOptionWithWrongLengthIsIgnoredLikeLinux) {
  // MSS with length 3, then a valid window scale: the MSS is skipped, the rest still parsed.
  TcpHeader out;
  ASSERT_EQ(Parse(RawOptions(B({0x02, 0x03, 0x05, 0x01, 0x03, 0x03, 0x09, 0x00})), &out),
            Drop::kNone);
  EXPECT_FALSE(out.options.mss.has_value());
  EXPECT_EQ(out.options.window_scale, 9);
}

TEST(TcpParse, SackWithPartialBlockIsIgnored) {
  TcpHeader out;
  ASSERT_EQ(Parse(RawOptions(B({0x01, 0x01, 0x05, 0x06, 0, 0, 0, 1})), &out), Drop::kNone);
  EXPECT_EQ(out.options.sack_count, 0);
}

TEST(TcpParse, UnknownOptionIsSkippedByItsLength) {
  // Kind 30 (MPTCP) with length 4, then MSS.
  TcpHeader out;
  ASSERT_EQ(Parse(RawOptions(B({30, 4, 0xaa, 0xbb, 0x02, 0x04, 0x05, 0xb4})), &out), Drop::kNone);
  EXPECT_EQ(out.options.mss, 1460);
}

TEST(TcpParse, EndOfOptionListStopsParsing) {
  // Garbage after EOL (which would otherwise be a zero-length option) is not looked at.
  TcpHeader out;
  ASSERT_EQ(Parse(RawOptions(B({0x02, 0x04, 0x05, 0xb4, 0x00, 0x07, 0x00, 0x00})), &out),
            Drop::kNone);
  EXPECT_EQ(out.options.mss, 1460);
}

TEST(TcpParse, BadChecksumIsRefusedUnlessVerificationIsOff) {
  ByteVec seg = Segment(Template(), B({1, 2, 3}));
  seg.back() ^= std::byte{0x40};
  EXPECT_EQ(Parse(seg), Drop::kBadTcpChecksum);
  EXPECT_EQ(Parse(seg, nullptr, nullptr, /*verify=*/false), Drop::kNone);
}

TEST(TcpParse, ChecksumCoversThePseudoHeader) {
  const ByteVec seg = Segment(Template());
  TcpHeader out;
  Bytes payload;
  EXPECT_EQ(ParseTcp(View(seg), kSrc, Ipv4Addr(198, 18, 0, 3), &out, &payload),
            Drop::kBadTcpChecksum);
}

TEST(TcpChecksum, FillMatchesIndependentComputation) {
  ByteVec seg = Segment(Template(), B({'a', 'b', 'c'}));  // odd length
  const uint16_t stored =
      static_cast<uint16_t>((static_cast<unsigned>(seg[16]) << 8) | static_cast<unsigned>(seg[17]));
  seg[16] = seg[17] = std::byte{0};
  ByteVec pseudo = B({198, 18, 0, 1, 198, 18, 0, 2, 0, 6, 0, static_cast<int>(seg.size())});
  EXPECT_EQ(InternetChecksum(View(Cat(pseudo, seg))), stored);
}

}  // namespace
}  // namespace shake::wire
