// ICMPv4 parse and emit.
#include "stack/wire/icmp.h"

#include <gtest/gtest.h>

#include "stack/wire/checksum.h"
#include "tests/stack/wire/test_bytes.h"

namespace shake::wire {
namespace {

using testing::B;
using testing::ByteVec;
using testing::MutView;
using testing::View;

TEST(Icmp, GoldenEchoRequest) {
  const ByteVec data = B({0xab, 0xcd});
  IcmpMessage m{kIcmpEchoRequest, 0, (0x1234u << 16) | 1, View(data)};
  ByteVec out(10);
  ASSERT_EQ(EmitIcmp(MutView(out), m), 10u);
  // 0800 + 1234 + 0001 + abcd = c602 -> checksum 39fd
  EXPECT_EQ(out, B({0x08, 0x00, 0x39, 0xfd, 0x12, 0x34, 0x00, 0x01, 0xab, 0xcd}));
}

TEST(Icmp, RoundTripFragNeeded) {
  const ByteVec quoted(28, std::byte{0x45});
  IcmpMessage m{kIcmpDestUnreachable, kIcmpFragNeeded, 1400, View(quoted)};
  ByteVec out(kIcmpHeaderLen + quoted.size());
  EmitIcmp(MutView(out), m);
  IcmpMessage q;
  ASSERT_EQ(ParseIcmp(View(out), &q), Drop::kNone);
  EXPECT_EQ(q.type, kIcmpDestUnreachable);
  EXPECT_EQ(q.code, kIcmpFragNeeded);
  EXPECT_EQ(q.rest & 0xffff, 1400u);
  EXPECT_EQ(q.payload.size(), 28u);
}

TEST(Icmp, EchoReplyCanBeBuiltInTheRequestsBuffer) {
  ByteVec buf = B({0x08, 0x00, 0, 0, 0, 7, 0, 9, 'p', 'i', 'n', 'g'});
  IcmpMessage req;
  ASSERT_EQ(ParseIcmp(View(buf), &req, /*verify=*/false), Drop::kNone);
  IcmpMessage reply{kIcmpEchoReply, 0, req.rest, req.payload};
  EmitIcmp(MutView(buf), reply);
  IcmpMessage q;
  ASSERT_EQ(ParseIcmp(View(buf), &q), Drop::kNone);
  EXPECT_EQ(q.type, kIcmpEchoReply);
  EXPECT_EQ(q.rest, 0x00070009u);
  EXPECT_EQ(q.payload[0], std::byte{'p'});
}

TEST(Icmp, ShorterThan8BytesIsBad) {
  IcmpMessage q;
  EXPECT_EQ(ParseIcmp(View(ByteVec(7)), &q), Drop::kBadIcmp);
  EXPECT_EQ(ParseIcmp({}, &q), Drop::kBadIcmp);
}

TEST(Icmp, BadChecksum) {
  ByteVec out(8);
  EmitIcmp(MutView(out), IcmpMessage{kIcmpEchoRequest, 0, 1, {}});
  out[7] ^= std::byte{1};
  IcmpMessage q;
  EXPECT_EQ(ParseIcmp(View(out), &q), Drop::kBadIcmpChecksum);
  EXPECT_EQ(ParseIcmp(View(out), &q, /*verify=*/false), Drop::kNone);
}

}  // namespace
}  // namespace shake::wire
