// SYN cookies (RFC 4987 3.6, as Linux's net/ipv4/syncookies.c): the cookie arithmetic on its
// own, then a listener whose SYN queue a flood fills, answered with cookies that a legitimate
// client completes with its options intact, and forged ACKs that are refused and counted.
#include <gtest/gtest.h>

#include "stack/tcp/syn_cookie.h"
#include "tests/stack/tcp_harness.h"

namespace shake::testing {
namespace {

const FourTuple kTuple{Endpoint{kLocal, kServerPort}, Endpoint{kPeer, kPeerPort}};
const SipKey kKey = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

TEST(SynCookieCode, RoundTripsTheMssRoundedDownToTheTable) {
  const SynCookies c(kKey);
  const SeqNum isn(0xfffffff0u);  // the ACK's sequence number wraps
  const struct {
    uint16_t offered, encoded;
  } cases[] = {{1460, 1460}, {9000, 1460}, {1452, 1440}, {1440, 1440}, {1400, 1300},
               {1300, 1300}, {1000, 536}, {536, 536}, {100, 536}};
  for (const auto& k : cases) {
    uint16_t mss = k.offered;
    const SeqNum iss = c.Make(kTuple, isn, 1000, &mss);
    EXPECT_EQ(mss, k.encoded) << k.offered;
    const auto got = c.Check(kTuple, isn + 1, iss + 1, 1000);
    ASSERT_TRUE(got.has_value()) << k.offered;
    EXPECT_EQ(*got, k.encoded);
  }
}

TEST(SynCookieCode, IsBoundToTheTupleTheIsnAndTheMinute) {
  const SynCookies c(kKey);
  const SeqNum isn(12345);
  uint16_t mss = 1460;
  const SeqNum iss = c.Make(kTuple, isn, 77, &mss);
  // Valid in its minute and the next (Linux MAX_SYNCOOKIE_AGE = 2), not after.
  EXPECT_TRUE(c.Check(kTuple, isn + 1, iss + 1, 77).has_value());
  EXPECT_TRUE(c.Check(kTuple, isn + 1, iss + 1, 78).has_value());
  EXPECT_FALSE(c.Check(kTuple, isn + 1, iss + 1, 79).has_value());
  EXPECT_FALSE(c.Check(kTuple, isn + 1, iss + 1, 76).has_value()) << "a cookie from the future";
  FourTuple other = kTuple;
  other.remote.port++;
  EXPECT_FALSE(c.Check(other, isn + 1, iss + 1, 77).has_value());
  other = kTuple;
  other.remote.addr = Ipv4Addr(198, 18, 0, 3);
  EXPECT_FALSE(c.Check(other, isn + 1, iss + 1, 77).has_value());
  // The peer's ISN is added in (as in Linux), so a sequence number a few off shifts the MSS
  // index, and one further off falls outside the table.
  EXPECT_FALSE(c.Check(kTuple, isn + 1001, iss + 1, 77).has_value()) << "another ISN";
  EXPECT_FALSE(c.Check(kTuple, isn + 1, iss + 1001, 77).has_value());
  EXPECT_FALSE(c.Check(kTuple, isn + 1, iss + 2, 77).has_value()) << "index 4: past the table";
  const SipKey other_key = {9};
  EXPECT_FALSE(SynCookies(other_key).Check(kTuple, isn + 1, iss + 1, 77).has_value());
}

TEST(SynCookieCode, ForgedAcksAreRefusedAlmostAlways) {
  // A blind attacker guessing SEG.ACK for a known tuple and ISN: the 24-bit hash and 2 bits of
  // index leave about 4 in 2^24 guesses per minute valid; 20000 guesses should find none.
  const SynCookies c(kKey);
  int accepted = 0;
  uint32_t x = 0x9e3779b9u;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1664525u + 1013904223u;
    if (c.Check(kTuple, SeqNum(1001), SeqNum(x), 5).has_value()) ++accepted;
  }
  EXPECT_EQ(accepted, 0);
}

TEST(SynCookieCode, TimestampCarriesTheOptionsAndNeverRunsAhead) {
  for (const uint32_t clock : {0u, 5u, 63u, 64u, 1000u, 0xffffffffu}) {
    SynCookies::Options o;
    o.window_scale = 7;
    o.sack_permitted = true;
    const uint32_t ts = SynCookies::Timestamp(clock, o);
    EXPECT_LE(static_cast<int32_t>(ts - clock), 0) << clock;
    EXPECT_LT(clock - ts, 64u) << clock;
    const SynCookies::Options d = SynCookies::DecodeOptions(ts);
    ASSERT_TRUE(d.window_scale.has_value());
    EXPECT_EQ(*d.window_scale, 7);
    EXPECT_TRUE(d.sack_permitted);
    EXPECT_FALSE(d.ecn);
  }
  SynCookies::Options none;
  none.ecn = true;
  const SynCookies::Options d = SynCookies::DecodeOptions(SynCookies::Timestamp(4096, none));
  EXPECT_FALSE(d.window_scale.has_value());
  EXPECT_FALSE(d.sack_permitted);
  EXPECT_TRUE(d.ecn);
}

// ---- A listener under a SYN flood -----------------------------------------------------------

constexpr SeqNum kClientIsn(0x7ffffff0u);
constexpr int kBacklog = 2;

class SynCookieTest : public ::testing::Test {
 protected:
  SynCookieTest(bool cookies = true)  // NOLINT: gtest needs a default constructor
      : h_(Config(cookies)) {
    listener_ = *h_.stack().Open();
    EXPECT_TRUE(h_.stack().Bind(listener_, Endpoint{Ipv4Addr(), kServerPort}).ok());
    EXPECT_TRUE(h_.stack().Listen(listener_, kBacklog).ok());
  }
  static StackConfig Config(bool cookies) {
    StackConfig c = TcpHarness::DefaultConfig();
    c.tcp.recv_buffer = 1 << 20;  // window scale 5
    c.tcp.syn_cookies = cookies;
    return c;
  }
  const Counters& counters() { return h_.stack().counters(); }

  // SYNs from ports 1000.. that never complete: Linux's queue is full once it holds more than
  // `backlog` (inet_csk_reqsk_queue_is_full), so backlog + 1 of them fill it.
  std::vector<Seg> Flood() {
    std::vector<Seg> synacks;
    for (uint16_t i = 0; i <= kBacklog; ++i) {
      Seg syn;
      syn.src_port = static_cast<uint16_t>(1000 + i);
      syn.flags = f::kSyn;
      syn.seq = SeqNum(5000u * i);
      syn.options.mss = 1460;
      auto out = h_.Deliver(syn);
      EXPECT_EQ(out.size(), 1u) << "SYN " << i << " fits in the queue";
      for (const Seg& s : out) {
        EXPECT_EQ(s.flags, f::kSyn | f::kAck);
        synacks.push_back(s);
      }
    }
    EXPECT_EQ(h_.stack().ConnectionsByState()[static_cast<size_t>(TcpState::kSynReceived)],
              static_cast<size_t>(kBacklog + 1));
    EXPECT_EQ(counters().tcp_syncookies_sent, 0u);
    return synacks;
  }

  // The legitimate client's SYN.
  Seg ClientSyn(bool timestamps, uint16_t mss = 1400) {
    Seg syn;
    syn.flags = f::kSyn;
    syn.seq = kClientIsn;
    syn.options.mss = mss;
    syn.options.window_scale = 7;
    syn.options.sack_permitted = true;
    if (timestamps) syn.options.timestamp = wire::TcpTimestamp{4242, 0};
    return syn;
  }
  // Its final ACK for the SYN-ACK `sa`, with `data`.
  Seg ClientAck(const Seg& sa, std::string_view data = {}) {
    Seg ack;
    ack.flags = f::kAck;
    ack.seq = kClientIsn + 1;
    ack.ack = sa.seq + 1;
    ack.window = 1000;
    if (sa.options.timestamp) ack.options.timestamp = wire::TcpTimestamp{4252, sa.options.timestamp->val};
    ack.payload = Bytes(data);
    return ack;
  }

  TcpHarness h_;
  SocketId listener_ = kNoSocket;
};

TEST_F(SynCookieTest, FullQueueAnswersWithACookieThatCompletesWithTheOptions) {
  Flood();
  auto out = h_.Deliver(ClientSyn(/*timestamps=*/true));
  ASSERT_EQ(out.size(), 1u);
  const Seg sa = out[0];
  EXPECT_EQ(sa.flags, f::kSyn | f::kAck);
  EXPECT_EQ(sa.ack, kClientIsn + 1);
  EXPECT_EQ(counters().tcp_syncookies_sent, 1u);
  // The SYN-ACK offers what a normal one would; the connection is not kept.
  EXPECT_EQ(sa.options.mss, std::optional<uint16_t>(1460));
  EXPECT_EQ(sa.options.window_scale, std::optional<uint8_t>(5));
  EXPECT_TRUE(sa.options.sack_permitted);
  ASSERT_TRUE(sa.options.timestamp.has_value());
  EXPECT_EQ(sa.options.timestamp->ecr, 4242u);
  EXPECT_EQ(sa.window, 65535);
  EXPECT_EQ(h_.stack().ConnectionsByState()[static_cast<size_t>(TcpState::kSynReceived)],
            static_cast<size_t>(kBacklog + 1));

  // A cookie SYN-ACK is never retransmitted: only the flood's three are, after 1 s.
  out = h_.Advance(Duration::Millis(1100));
  EXPECT_EQ(out.size(), static_cast<size_t>(kBacklog + 1));
  for (const Seg& s : out) EXPECT_NE(s.dst_port, kPeerPort) << s.ToString();

  // The final ACK, with data, creates the connection from the cookie.
  out = h_.Deliver(ClientAck(sa, "hello"));
  EXPECT_EQ(counters().tcp_syncookies_recv, 1u);
  EXPECT_EQ(counters().tcp_syncookies_failed, 0u);
  auto c = h_.stack().Accept(listener_);
  ASSERT_TRUE(c.ok()) << c.error();
  const SocketInfo info = h_.stack().Info(*c).value();
  EXPECT_EQ(info.state, TcpState::kEstablished);
  EXPECT_EQ(info.remote, (Endpoint{kPeer, kPeerPort}));
  // MSS 1400 rounds down to the table's 1300, less the timestamp option.
  EXPECT_EQ(info.mss, 1300 - 12);
  EXPECT_EQ(info.snd_wscale, 7);
  EXPECT_EQ(info.rcv_wscale, 5);
  EXPECT_TRUE(info.sack_enabled);
  EXPECT_TRUE(info.timestamps_enabled);
  std::byte buf[16];
  auto n = h_.stack().Recv(*c, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);

  // The connection works both ways: our data carries the right numbers and echoes the
  // peer's TSval.
  std::vector<std::byte> big(5000, std::byte{'x'});
  ASSERT_EQ(h_.stack().Send(*c, big).value(), big.size());
  out = h_.Flush();
  ASSERT_FALSE(out.empty());
  size_t sent = 0;
  for (const Seg& s : out) {
    EXPECT_EQ(s.seq, sa.seq + 1 + static_cast<uint32_t>(sent));
    EXPECT_EQ(s.ack, kClientIsn + 6);
    ASSERT_TRUE(s.options.timestamp.has_value());
    EXPECT_EQ(s.options.timestamp->ecr, 4252u);
    sent += s.payload.size();
  }
  EXPECT_EQ(sent, big.size());
}

TEST_F(SynCookieTest, WithoutTimestampsTheCookieCarriesOnlyTheMss) {
  Flood();
  auto out = h_.Deliver(ClientSyn(/*timestamps=*/false, /*mss=*/1460));
  ASSERT_EQ(out.size(), 1u);
  const Seg sa = out[0];
  // Linux clears the other options: nowhere to keep them (tcp_clear_options).
  EXPECT_EQ(sa.options.mss, std::optional<uint16_t>(1460));
  EXPECT_FALSE(sa.options.window_scale.has_value());
  EXPECT_FALSE(sa.options.sack_permitted);
  EXPECT_FALSE(sa.options.timestamp.has_value());
  EXPECT_TRUE(h_.Deliver(ClientAck(sa)).empty());
  auto c = h_.stack().Accept(listener_);
  ASSERT_TRUE(c.ok());
  const SocketInfo info = h_.stack().Info(*c).value();
  EXPECT_EQ(info.mss, 1460);
  EXPECT_EQ(info.snd_wscale, 0);
  EXPECT_EQ(info.rcv_wscale, 0);
  EXPECT_FALSE(info.sack_enabled);
  EXPECT_FALSE(info.timestamps_enabled);
  EXPECT_EQ(counters().tcp_syncookies_recv, 1u);
}

TEST_F(SynCookieTest, EcnSurvivesInTheCookieTimestamp) {
  Flood();
  Seg syn = ClientSyn(/*timestamps=*/true);
  syn.flags |= f::kEce | f::kCwr;  // RFC 3168 6.1.1: an ECN-setup SYN
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kSyn | f::kAck | f::kEce);
  EXPECT_TRUE(h_.Deliver(ClientAck(out[0])).empty());
  auto c = h_.stack().Accept(listener_);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(h_.stack().Info(*c).value().ecn_enabled);
  // Without timestamps there is nowhere to keep it: the cookie SYN-ACK declines ECN.
  syn = ClientSyn(/*timestamps=*/false);
  syn.src_port = kPeerPort + 1;
  syn.flags |= f::kEce | f::kCwr;
  out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kSyn | f::kAck);
}

TEST_F(SynCookieTest, ForgedAckIsResetAndCounted) {
  Flood();
  auto out = h_.Deliver(ClientSyn(true));
  ASSERT_EQ(out.size(), 1u);
  Seg forged = ClientAck(out[0]);
  forged.ack = forged.ack + 12345;
  out = h_.Deliver(forged);
  // As Linux: the listener resets an ACK whose cookie fails (<SEQ=SEG.ACK><CTL=RST>).
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(out[0].seq, forged.ack);
  EXPECT_EQ(counters().tcp_syncookies_failed, 1u);
  EXPECT_EQ(counters().tcp_syncookies_recv, 0u);
  EXPECT_EQ(h_.stack().Accept(listener_).error(), EAGAIN);
  // A right cookie on the wrong port fails the same way.
  Seg moved = ClientAck(h_.Deliver(ClientSyn(true))[0]);
  moved.src_port = kPeerPort + 1;
  out = h_.Deliver(moved);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(counters().tcp_syncookies_failed, 2u);
  EXPECT_EQ(h_.stack().ConnectionsByState()[static_cast<size_t>(TcpState::kEstablished)], 0u);
}

TEST_F(SynCookieTest, AcksAreNotTakenForCookiesWithoutARecentOverflow) {
  // No cookie was ever sent: an ACK for the listener is reset without a cookie check.
  Seg ack;
  ack.flags = f::kAck;
  ack.seq = kClientIsn + 1;
  ack.ack = SeqNum(777);
  auto out = h_.Deliver(ack);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(counters().tcp_syncookies_failed, 0u);
  // Two minutes after the last cookie, a valid cookie is no longer looked at either.
  Flood();
  const Seg sa = h_.Deliver(ClientSyn(true))[0];
  h_.Advance(Duration::Seconds(121));
  out = h_.Deliver(ClientAck(sa));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(counters().tcp_syncookies_recv + counters().tcp_syncookies_failed, 0u);
}

TEST_F(SynCookieTest, FullAcceptQueueDropsTheCookieAck) {
  const std::vector<Seg> flood = Flood();
  ASSERT_EQ(flood.size(), static_cast<size_t>(kBacklog + 1));
  const Seg sa = h_.Deliver(ClientSyn(true))[0];
  // The flood's handshakes complete and nobody accepts: backlog + 1 fill the accept queue.
  for (const Seg& s : flood) {
    Seg ack;
    ack.src_port = s.dst_port;
    ack.flags = f::kAck;
    ack.seq = s.ack;
    ack.ack = s.seq + 1;
    EXPECT_TRUE(h_.Deliver(ack).empty());
  }
  // Linux tcp_v4_syn_recv_sock: the valid cookie ACK is dropped, not reset, and no
  // connection is made; the client's next segment gets another chance.
  const Seg ack = ClientAck(sa, "hi");
  EXPECT_TRUE(h_.Deliver(ack).empty());
  EXPECT_EQ(counters().tcp_syncookies_recv, 1u);
  EXPECT_EQ(counters().dropped(Drop::kAcceptQueueFull), 1u);
  EXPECT_EQ(h_.stack().ConnectionsByState()[static_cast<size_t>(TcpState::kEstablished)],
            static_cast<size_t>(kBacklog + 1));
  ASSERT_TRUE(h_.stack().Accept(listener_).ok());
  auto out = h_.Deliver(ack);
  ASSERT_EQ(out.size(), 1u) << "the data is acknowledged";
  EXPECT_EQ(out[0].ack, kClientIsn + 3);
  EXPECT_EQ(counters().tcp_syncookies_recv, 2u);
  EXPECT_EQ(h_.stack().ConnectionsByState()[static_cast<size_t>(TcpState::kEstablished)],
            static_cast<size_t>(kBacklog + 2));
}

class SynCookiesOffTest : public SynCookieTest {
 protected:
  SynCookiesOffTest() : SynCookieTest(false) {}
};

TEST_F(SynCookiesOffTest, FullQueueDropsTheSyn) {
  Flood();
  EXPECT_TRUE(h_.Deliver(ClientSyn(true)).empty());
  EXPECT_EQ(counters().dropped(Drop::kSynQueueFull), 1u);
  EXPECT_EQ(counters().tcp_syncookies_sent, 0u);
  // Once a handshake completes, the queue has room again.
  Seg syn;
  syn.src_port = 1000;
  syn.flags = f::kSyn;
  syn.seq = SeqNum(0);
  auto out = h_.Deliver(syn);  // a retransmitted SYN: its SYN-ACK again
  ASSERT_EQ(out.size(), 1u);
  Seg ack;
  ack.src_port = 1000;
  ack.flags = f::kAck;
  ack.seq = SeqNum(1);
  ack.ack = out[0].seq + 1;
  EXPECT_TRUE(h_.Deliver(ack).empty());
  EXPECT_EQ(h_.Deliver(ClientSyn(true)).size(), 1u);
}

}  // namespace
}  // namespace shake::testing
