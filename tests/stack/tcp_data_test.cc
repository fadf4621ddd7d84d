// Exact-segment tests of data transfer: ACK policy, Nagle, SACK generation, retransmission,
// fast retransmit, zero-window probes, keepalive, user timeout and PAWS.
#include <gtest/gtest.h>

#include "stack/tcp/congestion.h"
#include "stack/tcp/recv_buffer.h"
#include "tests/stack/tcp_harness.h"

namespace shake::testing {
namespace {

constexpr SeqNum kPeerIsn(1000);

class TcpDataTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(/*sack=*/true, /*ts=*/false); }

  // An accepted connection; the peer offers SACK and timestamps as asked, window scale 0.
  void Open(bool sack, bool ts) {
    auto l = h_.stack().Open();
    ASSERT_TRUE(h_.stack().Bind(*l, Endpoint{Ipv4Addr(), kServerPort}).ok());
    ASSERT_TRUE(h_.stack().Listen(*l, 8).ok());
    ts_ = ts;
    Seg syn;
    syn.flags = f::kSyn;
    syn.seq = kPeerIsn;
    syn.options.mss = 1000;
    syn.options.sack_permitted = sack;
    if (ts) syn.options.timestamp = wire::TcpTimestamp{peer_ts_, 0};
    auto out = h_.Deliver(syn);
    ASSERT_EQ(out.size(), 1u);
    iss_ = out[0].seq;
    EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1)).empty());
    auto c = h_.stack().Accept(*l);
    ASSERT_TRUE(c.ok());
    conn_ = *c;
  }

  Seg Peer(uint8_t flags, uint32_t seq_off, uint32_t ack_off, size_t len = 0,
           uint16_t window = 65535) {
    Seg s;
    s.flags = flags;
    s.seq = kPeerIsn + seq_off;
    s.ack = iss_ + ack_off;
    s.window = window;
    s.payload.assign(len, std::byte{'x'});
    if (ts_) s.options.timestamp = wire::TcpTimestamp{peer_ts_ += 1, 0};
    return s;
  }

  size_t Send(size_t n) {
    std::vector<std::byte> data(n, std::byte{'d'});
    auto r = h_.stack().Send(conn_, data);
    EXPECT_TRUE(r.ok()) << r.error();
    return r.ok() ? *r : 0;
  }

  uint32_t Off(SeqNum s) const { return static_cast<uint32_t>(s - iss_); }

  TcpHarness h_;
  SocketId conn_ = kNoSocket;
  SeqNum iss_;
  uint32_t peer_ts_ = 500;
  bool ts_ = false;
};

TEST_F(TcpDataTest, SendsSegmentsOfTheNegotiatedMss) {
  EXPECT_EQ(Send(2500), 2500u);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].payload.size(), 1000u);
  EXPECT_EQ(out[1].payload.size(), 1000u);
  EXPECT_EQ(out[2].payload.size(), 500u);
  EXPECT_EQ(Off(out[0].seq), 1u);
  EXPECT_EQ(Off(out[2].seq), 2001u);
  EXPECT_EQ(out[2].flags, f::kAck | f::kPsh);
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 2501)).empty());
  EXPECT_EQ(h_.stack().Info(conn_).value().unsent_bytes, 0u);
}

TEST_F(TcpDataTest, NagleHoldsSmallSegmentWhileDataIsUnacknowledged) {
  Send(10);
  ASSERT_EQ(h_.Flush().size(), 1u);
  Send(10);
  EXPECT_TRUE(h_.Flush().empty()) << "Nagle: the second small segment waits";
  auto out = h_.Deliver(Peer(f::kAck, 1, 11));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 11u);
  EXPECT_EQ(out[0].payload.size(), 10u);
}

TEST_F(TcpDataTest, NoDelaySendsSmallSegmentsAtOnce) {
  SocketOptions o = h_.stack().GetOptions(conn_).value();
  o.no_delay = true;
  ASSERT_TRUE(h_.stack().SetOptions(conn_, o).ok());
  Send(10);
  ASSERT_EQ(h_.Flush().size(), 1u);
  Send(10);
  EXPECT_EQ(h_.Flush().size(), 1u);
}

TEST_F(TcpDataTest, QuickAcksThenDelayedAck) {
  // Linux acknowledges the first segments at once (quick-ack mode), then delays.
  uint32_t off = 1;
  for (int i = 0; i < 16; ++i) {
    auto out = h_.Deliver(Peer(f::kAck, off, 1, 100));
    ASSERT_EQ(out.size(), 1u) << i;
    off += 100;
    std::vector<std::byte> sink(100);
    ASSERT_TRUE(h_.stack().Recv(conn_, sink).ok());
  }
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, off, 1, 100)).empty());
  off += 100;
  EXPECT_TRUE(h_.Advance(Duration::Millis(39)).empty());
  auto out = h_.Advance(Duration::Millis(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + off);
  // A second segment before the timer: acknowledged at once (every second segment).
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, off, 1, 100)).empty());
  out = h_.Deliver(Peer(f::kAck, off + 100, 1, 100));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + off + 200);
}

TEST_F(TcpDataTest, OutOfOrderDataIsAckedAtOnceWithSackBlocks) {
  auto out = h_.Deliver(Peer(f::kAck, 1001, 1, 500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + 1);
  ASSERT_EQ(out[0].options.sack_count, 1);
  EXPECT_EQ(out[0].options.sack[0], (wire::SackBlock{kPeerIsn + 1001, kPeerIsn + 1501}));
  out = h_.Deliver(Peer(f::kAck, 2001, 1, 500));
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(out[0].options.sack_count, 2);
  // RFC 2018 4: the block with the most recent segment comes first.
  EXPECT_EQ(out[0].options.sack[0], (wire::SackBlock{kPeerIsn + 2001, kPeerIsn + 2501}));
  EXPECT_EQ(out[0].options.sack[1], (wire::SackBlock{kPeerIsn + 1001, kPeerIsn + 1501}));
  // Filling the first hole advances RCV.NXT past the first block.
  out = h_.Deliver(Peer(f::kAck, 1, 1, 1000));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + 1501);
  ASSERT_EQ(out[0].options.sack_count, 1);
  std::vector<std::byte> buf(4000);
  EXPECT_EQ(*h_.stack().Recv(conn_, buf), 1500u);
}

TEST_F(TcpDataTest, OutOfOrderHoardBeyondTheRangeTableIsDroppedAndCounted) {
  // An out-of-order hoard: segments that each leave a hole before them. The reassembly keeps
  // RecvBuffer::kMaxRanges ranges; the rest is dropped (still ACKed, with SACK) and counted as
  // Linux's TCPOFODrop.
  const size_t extra = 5;
  for (size_t i = 0; i < RecvBuffer::kMaxRanges + extra; ++i) {
    auto out = h_.Deliver(Peer(f::kAck, static_cast<uint32_t>(101 + 200 * i), 1, 100));
    ASSERT_EQ(out.size(), 1u) << i;
    EXPECT_EQ(out[0].ack, kPeerIsn + 1);
  }
  const Counters& c = h_.stack().counters();
  EXPECT_EQ(c.tcp_ooo_segments_in, RecvBuffer::kMaxRanges);
  EXPECT_EQ(c.tcp_ooo_dropped, extra);
  // The kept ranges are intact: filling the first hole delivers it and the first range.
  auto out = h_.Deliver(Peer(f::kAck, 1, 1, 100));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + 201);
}

TEST_F(TcpDataTest, SendBufferStartsAtTheInitialWindowsWorthAndGrowsWithCwnd) {
  // Linux tcp_sndbuf_expand: 2 * max(10, cwnd) segments of (bit_ceil(MSS + 512) + 256) bytes;
  // MSS 1000 here, so 2 * 10 * 2304 = 46,080 until cwnd grows. A peer whose window stays shut
  // (the zero-window persist attack) pins that much, not the configured 64 KiB.
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1, 0, /*window=*/0)).empty());
  EXPECT_EQ(Send(1 << 20), 46080u);
  EXPECT_EQ(h_.stack().Info(conn_).value().send_space, 0u);
  h_.Advance(Duration::Seconds(5));  // zero-window probes: cwnd does not move
  EXPECT_EQ(h_.stack().Info(conn_).value().send_space, 0u);
  // The window opens and the initial window (10 segments) is acknowledged: slow start doubles
  // cwnd, and the buffer grows to the configured send_buffer (64 KiB).
  h_.Deliver(Peer(f::kAck, 1, 1, 0, 65535));
  h_.Flush();
  h_.Deliver(Peer(f::kAck, 1, 1 + 10000, 0, 65535));
  EXPECT_EQ(Send(1 << 20), 65536u - (46080u - 10000u));
}

TEST_F(TcpDataTest, SoSndbufFixesTheSendBuffer) {
  SocketOptions o = h_.stack().GetOptions(conn_).value();
  o.send_buffer = 50000;
  ASSERT_TRUE(h_.stack().SetOptions(conn_, o).ok());
  EXPECT_EQ(Send(1 << 20), 50000u);
}

TEST_F(TcpDataTest, RetransmissionTimeoutBacksOff) {
  Send(100);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  // RTO 200 ms (floor), then 400, 800: exponential backoff (RFC 6298 5.5).
  int64_t at = 0;
  for (int i = 0; i < 3; ++i) {
    at += 200LL << i;
    out = h_.AdvanceTo(Instant::FromNanos(0) + Duration::Seconds(1) + Duration::Millis(at));
    ASSERT_EQ(out.size(), 1u) << i;
    EXPECT_EQ(Off(out[0].seq), 1u);
    EXPECT_EQ(out[0].payload.size(), 100u);
  }
  EXPECT_EQ(h_.stack().counters().tcp_retransmits, 3u);
}

TEST_F(TcpDataTest, TimerRestartsOnPartialAck) {
  Send(3000);
  ASSERT_EQ(h_.Flush().size(), 3u);
  h_.Advance(Duration::Millis(150));
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1001)).empty());
  // The ACK measured 150 ms after a handshake of zero: SRTT 18.75 ms, and Linux's RTO adds
  // the larger of 4 * RTTVAR (150 ms) and rto_min (200 ms).
  const Duration rto = h_.stack().Info(conn_).value().rto;
  EXPECT_EQ(rto, Duration::Micros(218750));
  // RFC 6298 (5.3): the timer restarted at 150 ms, so nothing at 200 ms...
  EXPECT_TRUE(h_.Advance(rto - Duration::Millis(1)).empty());
  auto out = h_.Advance(Duration::Millis(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1001u);
}

TEST_F(TcpDataTest, FastRetransmitOnThreeDuplicateAcksWithoutSack) {
  // A fresh connection without SACK: NewReno.
  h_.~TcpHarness();
  new (&h_) TcpHarness();
  Open(/*sack=*/false, /*ts=*/false);
  Send(5000);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 5u);
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1001)).empty() || true);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1001)).empty()) << i;
  out = h_.Deliver(Peer(f::kAck, 1, 1001));
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1001u) << "third duplicate ACK: retransmit SND.UNA";
  EXPECT_EQ(h_.stack().counters().tcp_fast_retransmits, 1u);
  // A partial ACK retransmits the next hole at once (RFC 6582).
  out = h_.Deliver(Peer(f::kAck, 1, 2001));
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 2001u);
}

TEST_F(TcpDataTest, SackRecoveryRetransmitsOnlyTheHole) {
  Send(5000);
  ASSERT_EQ(h_.Flush().size(), 5u);
  // Segment 2 (1001..2001) is lost; 3, 4 and 5 arrive and are SACKed.
  auto dup = [&](uint32_t right) {
    Seg s = Peer(f::kAck, 1, 1001);
    s.options.sack_count = 1;
    s.options.sack[0] = {iss_ + 2001, iss_ + right};
    return h_.Deliver(s);
  };
  EXPECT_TRUE(dup(3001).empty());
  EXPECT_TRUE(dup(4001).empty());
  auto out = dup(5001);
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1001u);
  EXPECT_EQ(out[0].payload.size(), 1000u);
  for (size_t i = 1; i < out.size(); ++i) EXPECT_NE(Off(out[i].seq), 2001u) << "SACKed data resent";
}

TEST_F(TcpDataTest, ZeroWindowProbesWithBackoff) {
  // The peer closes its window.
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1, 0, 0)).empty());
  Send(100);
  EXPECT_TRUE(h_.Flush().empty());
  // Probes: SND.UNA - 1, no data, at 200 ms then backing off.
  auto out = h_.Advance(Duration::Millis(200));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 0u);
  EXPECT_TRUE(out[0].payload.empty());
  EXPECT_TRUE(h_.Advance(Duration::Millis(399)).empty());
  EXPECT_EQ(h_.Advance(Duration::Millis(1)).size(), 1u);
  EXPECT_EQ(h_.stack().counters().tcp_zero_window_probes, 2u);
  // The window opens: the data goes.
  out = h_.Deliver(Peer(f::kAck, 1, 1, 0, 65535));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload.size(), 100u);
}

TEST_F(TcpDataTest, KeepaliveProbesThenTimesOut) {
  SocketOptions o = h_.stack().GetOptions(conn_).value();
  o.keepalive = true;
  o.keepalive_time = Duration::Seconds(10);
  o.keepalive_interval = Duration::Seconds(2);
  o.keepalive_probes = 3;
  ASSERT_TRUE(h_.stack().SetOptions(conn_, o).ok());
  h_.Flush();
  EXPECT_TRUE(h_.Advance(Duration::Millis(9999)).empty());
  auto out = h_.Advance(Duration::Millis(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 0u);
  // An answer resets the count.
  EXPECT_TRUE(h_.Deliver(Peer(f::kAck, 1, 1)).empty());
  EXPECT_EQ(h_.Advance(Duration::Seconds(10)).size(), 1u);
  EXPECT_EQ(h_.Advance(Duration::Seconds(2)).size(), 1u);
  EXPECT_EQ(h_.Advance(Duration::Seconds(2)).size(), 1u);
  h_.Advance(Duration::Seconds(2));
  EXPECT_EQ(h_.stack().Info(conn_).value().state, TcpState::kClosed);
  EXPECT_EQ(h_.stack().TakeError(conn_), ETIMEDOUT);
}

TEST_F(TcpDataTest, UserTimeoutAbortsRetransmission) {
  SocketOptions o = h_.stack().GetOptions(conn_).value();
  o.user_timeout = Duration::Seconds(3);
  ASSERT_TRUE(h_.stack().SetOptions(conn_, o).ok());
  Send(100);
  h_.Flush();
  h_.Advance(Duration::Seconds(10));
  EXPECT_EQ(h_.stack().Info(conn_).value().state, TcpState::kClosed);
  EXPECT_EQ(h_.stack().TakeError(conn_), ETIMEDOUT);
}

TEST_F(TcpDataTest, PawsDropsOldTimestamp) {
  h_.~TcpHarness();
  new (&h_) TcpHarness();
  Open(/*sack=*/true, /*ts=*/true);
  EXPECT_EQ(h_.Deliver(Peer(f::kAck, 1, 1, 100)).size(), 1u);
  Seg old = Peer(f::kAck, 101, 1, 100);
  old.options.timestamp->val = 1;  // older than TS.Recent
  auto out = h_.Deliver(old);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].ack, kPeerIsn + 101) << "dropped, with a duplicate ACK";
  EXPECT_EQ(h_.stack().counters().dropped(Drop::kPawsReject), 1u);
}

TEST_F(TcpDataTest, ReceiveWindowShrinksAsBufferFillsAndReopens) {
  // 64 KiB receive buffer, window scale negotiated off: at most 65535.
  uint32_t off = 1;
  for (int i = 0; i < 64; ++i) {
    h_.Deliver(Peer(f::kAck, off, 1, 1000));
    off += 1000;
  }
  h_.Deliver(Peer(f::kAck, off, 1, 1000));
  off += 1000;
  auto out = h_.Advance(Duration::Millis(40));  // the delayed ACK, if one is pending
  if (out.empty()) out = h_.Deliver(Peer(f::kAck, 1, 1));  // a duplicate draws the window
  ASSERT_FALSE(out.empty());
  EXPECT_LT(out.back().window, 2000);
  std::vector<std::byte> buf(70000);
  EXPECT_EQ(*h_.stack().Recv(conn_, buf), 65000u);
  (void)off;
  out = h_.Flush();
  ASSERT_EQ(out.size(), 1u) << "window update after the application read";
  EXPECT_GT(out[0].window, 60000);
}

// ---- Loss recovery under reordering: RACK (RFC 8985) and undo (RFC 2883) -----------------

TEST_F(TcpDataTest, RackWaitsOutTheReorderingWindowBeforeRetransmitting) {
  Send(5000);
  ASSERT_EQ(h_.Flush().size(), 5u);
  h_.Advance(Duration::Millis(10));
  // Segment 1 is acknowledged and segment 3 SACKed: segment 2 may only be late.
  Seg s = Peer(f::kAck, 1, 1001);
  s.options.sack_count = 1;
  s.options.sack[0] = {iss_ + 2001, iss_ + 3001};
  EXPECT_TRUE(h_.Deliver(s).empty()) << "one SACK above a hole is not a loss yet";
  // RACK's timer (an RTT plus the reordering window after segment 2 was sent) resends it,
  // long before the 200 ms retransmission timeout.
  auto out = h_.Advance(Duration::Millis(20));
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1001u);
  EXPECT_EQ(out[0].payload.size(), 1000u);
  EXPECT_EQ(h_.stack().counters().tcp_rto_expirations, 0u);
}

TEST_F(TcpDataTest, LateOriginalThenDsackUndoesTheWindowReduction) {
  Send(5000);
  ASSERT_EQ(h_.Flush().size(), 5u);
  h_.Advance(Duration::Millis(10));
  const auto before = h_.stack().Info(conn_);
  ASSERT_TRUE(before.ok());
  auto sack = [&](uint32_t right) {
    Seg s = Peer(f::kAck, 1, 1001);
    s.options.sack_count = 1;
    s.options.sack[0] = {iss_ + 2001, iss_ + right};
    return h_.Deliver(s);
  };
  sack(3001);
  sack(4001);
  auto out = sack(5001);
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1001u) << "fast retransmit";
  const auto during = h_.stack().Info(conn_);
  ASSERT_TRUE(during.ok());
  EXPECT_LT((*during).cwnd, (*before).cwnd);
  // The original segment 2 was only delayed: everything is acknowledged, then the
  // retransmission arrives as a duplicate and the receiver reports it with a D-SACK.
  h_.Advance(Duration::Millis(1));
  h_.Deliver(Peer(f::kAck, 1, 5001));
  Seg d = Peer(f::kAck, 1, 5001);
  d.options.sack_count = 1;
  d.options.sack[0] = {iss_ + 1001, iss_ + 2001};
  h_.Deliver(d);
  const auto after = h_.stack().Info(conn_);
  ASSERT_TRUE(after.ok());
  EXPECT_GE((*after).cwnd, (*before).cwnd) << "the spurious reduction is undone";
  EXPECT_GE((*after).ssthresh, (*before).cwnd);
}

TEST_F(TcpDataTest, RetransmissionsAfterTimeoutSkipSackedSegments) {
  Send(5000);
  ASSERT_EQ(h_.Flush().size(), 5u);
  h_.Advance(Duration::Millis(10));
  // Segments 2 and 4 arrived; nothing more is heard.
  Seg s = Peer(f::kAck, 1, 1);
  s.options.sack_count = 2;
  s.options.sack[0] = {iss_ + 3001, iss_ + 4001};
  s.options.sack[1] = {iss_ + 1001, iss_ + 2001};
  std::vector<Seg> all = h_.Deliver(s);
  // Segment 1 is resent (by RACK and PRR, which lets one segment out, then by the timeouts);
  // once it is acknowledged, the rest of the holes follow, and nothing SACKed is resent.
  bool resent1 = false, resent3 = false, resent5 = false;
  auto scan = [&](const std::vector<Seg>& out) {
    for (const Seg& o : out) {
      if (o.payload.empty()) continue;
      EXPECT_NE(Off(o.seq), 1001u) << "SACKed segment 2 resent";
      EXPECT_NE(Off(o.seq), 3001u) << "SACKed segment 4 resent";
      resent1 = resent1 || Off(o.seq) == 1u;
      resent3 = resent3 || Off(o.seq) == 2001u;
      resent5 = resent5 || Off(o.seq) == 4001u;
    }
  };
  scan(all);
  for (int i = 0; i < 20 && !resent1; ++i) scan(h_.Advance(Duration::Millis(100)));
  EXPECT_TRUE(resent1);
  Seg ack = Peer(f::kAck, 1, 2001);
  ack.options.sack_count = 1;
  ack.options.sack[0] = {iss_ + 3001, iss_ + 4001};
  scan(h_.Deliver(ack));
  for (int i = 0; i < 20 && !resent3; ++i) scan(h_.Advance(Duration::Millis(100)));
  EXPECT_TRUE(resent3);
  // Segment 5, never SACKed, goes once segment 3 is acknowledged (RACK, or the next timeout).
  scan(h_.Deliver(Peer(f::kAck, 1, 4001)));
  for (int i = 0; i < 20 && !resent5; ++i) scan(h_.Advance(Duration::Millis(100)));
  EXPECT_TRUE(resent5);
}

// ---- Tail loss probes (RFC 8985 section 7) and CUBIC (RFC 9438) ----------------------------

TEST_F(TcpDataTest, TailLossProbeRetransmitsTheLastSegmentBeforeTheRto) {
  Send(3000);
  ASSERT_EQ(h_.Flush().size(), 3u);
  // The handshake measured an RTT of zero: PTO = 2 * SRTT + 2 ms with several segments in
  // flight (RFC 8985 7.2 as Linux's tcp_schedule_loss_probe).
  EXPECT_TRUE(h_.Advance(Duration::Micros(1999)).empty());
  auto out = h_.Advance(Duration::Micros(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 2001u) << "no new data: the last segment is the probe (7.3)";
  EXPECT_EQ(out[0].payload.size(), 1000u);
  EXPECT_EQ(h_.stack().counters().tcp_loss_probes, 1u);
  // One probe per episode; then the RTO, counted from the probe.
  EXPECT_TRUE(h_.Advance(Duration::Millis(199)).empty());
  out = h_.Advance(Duration::Millis(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1u);
  EXPECT_EQ(h_.stack().counters().tcp_rto_expirations, 1u);
}

TEST_F(TcpDataTest, TailLossProbeSendsNewDataWhenItCan) {
  Send(12000);
  ASSERT_EQ(h_.Flush().size(), 10u) << "the initial window";
  auto out = h_.Advance(Duration::Millis(10));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 10001u) << "the probe is new data, beyond cwnd (RFC 8985 7.3)";
  EXPECT_EQ(h_.stack().counters().tcp_retransmits, 0u);
  // Its SACK shows the whole flight before it missing: RACK recovers without a timeout.
  h_.Advance(Duration::Millis(5));
  Seg s = Peer(f::kAck, 1, 1);
  s.options.sack_count = 1;
  s.options.sack[0] = {iss_ + 10001, iss_ + 11001};
  out = h_.Deliver(s);
  ASSERT_GE(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1u);
  EXPECT_EQ(h_.stack().counters().tcp_rto_expirations, 0u);
}

TEST_F(TcpDataTest, NoTailLossProbeWhenDisabled) {
  h_.~TcpHarness();
  StackConfig c = TcpHarness::DefaultConfig();
  c.tcp.tail_loss_probe = false;  // Linux tcp_early_retrans=0
  new (&h_) TcpHarness(c);
  Open(/*sack=*/true, /*ts=*/false);
  Send(3000);
  ASSERT_EQ(h_.Flush().size(), 3u);
  EXPECT_TRUE(h_.Advance(Duration::Millis(199)).empty());
  auto out = h_.Advance(Duration::Millis(1));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(Off(out[0].seq), 1u);
  EXPECT_EQ(h_.stack().counters().tcp_loss_probes, 0u);
}

TEST_F(TcpDataTest, ProbeThatRepairedALossReducesTheWindow) {
  Send(3000);
  ASSERT_EQ(h_.Flush().size(), 3u);
  ASSERT_EQ(h_.Advance(Duration::Millis(10)).size(), 1u);  // the probe: segment 3 again
  // The ACK covers the probe and no D-SACK says the original arrived: segment 3 was lost.
  h_.Deliver(Peer(f::kAck, 1, 3001));
  Send(1000);
  ASSERT_EQ(h_.Flush().size(), 1u);
  h_.Deliver(Peer(f::kAck, 1, 4001));
  EXPECT_EQ(h_.stack().counters().tcp_loss_probe_recoveries, 1u);
  const auto info = h_.stack().Info(conn_);
  ASSERT_TRUE(info.ok());
  EXPECT_LT((*info).ssthresh, 0x7fffffffu) << "RFC 8985 7.4.2: a congestion response";
  EXPECT_EQ(h_.stack().counters().tcp_fast_retransmits, 0u);
}

TEST_F(TcpDataTest, ProbeReportedAsDuplicateKeepsTheWindow) {
  Send(3000);
  ASSERT_EQ(h_.Flush().size(), 3u);
  ASSERT_EQ(h_.Advance(Duration::Millis(10)).size(), 1u);
  // Everything arrived, and then the probe as a duplicate (RFC 2883 D-SACK).
  h_.Deliver(Peer(f::kAck, 1, 3001));
  Seg d = Peer(f::kAck, 1, 3001);
  d.options.sack_count = 1;
  d.options.sack[0] = {iss_ + 2001, iss_ + 3001};
  h_.Deliver(d);
  Send(1000);
  ASSERT_EQ(h_.Flush().size(), 1u);
  h_.Deliver(Peer(f::kAck, 1, 4001));
  EXPECT_EQ(h_.stack().counters().tcp_loss_probe_recoveries, 0u);
  const auto info = h_.stack().Info(conn_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ((*info).ssthresh, 0x7fffffffu);
}

// Fast recovery with 4 segments in flight (the first ACK acknowledges segment 1): CUBIC keeps
// 0.7 of them (RFC 9438 4.6), Reno half (RFC 5681 equation 4).
TEST_F(TcpDataTest, CubicAndRenoReduceByTheirBeta) {
  // Five segments out of an initial window of ten: ssthresh comes from cwnd, as Linux's
  // (RFC 9438 4.6 allows cwnd for the flight once cwnd is validated, RFC 7661).
  for (const auto& [cc, want] : {std::pair{CongestionControl::kCubic, 7000u},
                                std::pair{CongestionControl::kReno, 5000u}}) {
    h_.~TcpHarness();
    StackConfig c = TcpHarness::DefaultConfig();
    c.tcp.congestion_control = cc;
    new (&h_) TcpHarness(c);
    Open(/*sack=*/true, /*ts=*/false);
    Send(5000);
    ASSERT_EQ(h_.Flush().size(), 5u);
    for (uint32_t right : {3001u, 4001u, 5001u}) {
      Seg s = Peer(f::kAck, 1, 1001);
      s.options.sack_count = 1;
      s.options.sack[0] = {iss_ + 2001, iss_ + right};
      h_.Deliver(s);
    }
    EXPECT_EQ(h_.stack().counters().tcp_fast_retransmits, 1u);
    const auto info = h_.stack().Info(conn_);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ((*info).ssthresh, want) << static_cast<int>(cc);
  }
}

}  // namespace

// The controller alone, driven one RTT (a full window of ACKs) at a time.
namespace {

constexpr uint32_t kMss = 1000;

uint32_t RunRtts(CongestionController& cc, Instant* now, Duration rtt, int rtts, uint32_t cwnd,
                 uint32_t ssthresh) {
  for (int i = 0; i < rtts; ++i) {
    *now = *now + rtt;
    cc.OnAck(*now, cwnd, kMss, ssthresh, rtt, &cwnd);
  }
  return cwnd;
}

TEST(CubicTest, WindowClimbsBackToWmaxAfterK) {
  CongestionController cc(CongestionControl::kCubic);
  const uint32_t ssthresh = cc.OnCongestionEvent(100 * kMss, kMss, false);
  EXPECT_EQ(ssthresh, 70 * kMss);
  EXPECT_DOUBLE_EQ(cc.w_max_segments(), 100.0);
  // K = cbrt(W_max * (1 - beta) / C) = cbrt(75) = 4.22 s (RFC 9438 4.2); with a 100 ms RTT the
  // Reno-friendly estimate is still below the cubic then, so the cubic sets the window.
  Instant now = Instant::FromNanos(0);
  const uint32_t at_k = RunRtts(cc, &now, Duration::Millis(100), 42, ssthresh, ssthresh);
  EXPECT_NEAR(static_cast<double>(at_k) / kMss, 100.0, 1.5);
  // Beyond K the convex region probes above W_max.
  const uint32_t later = RunRtts(cc, &now, Duration::Millis(100), 20, at_k, ssthresh);
  EXPECT_GT(later, 105 * kMss);
}

TEST(CubicTest, RenoFriendlyRegionAtShortRtts) {
  CongestionController cc(CongestionControl::kCubic);
  const uint32_t ssthresh = cc.OnCongestionEvent(10 * kMss, kMss, false);
  EXPECT_EQ(ssthresh, 7 * kMss);
  // 1 s at a 10 ms RTT: the cubic is still below W_max (K = 1.96 s), but Reno would have
  // grown by about one segment per RTT; RFC 9438 4.3 follows the Reno estimate.
  Instant now = Instant::FromNanos(0);
  const uint32_t cwnd = RunRtts(cc, &now, Duration::Millis(10), 100, ssthresh, ssthresh);
  EXPECT_GT(cwnd, 50 * kMss);
}

TEST(CubicTest, FastConvergenceLowersWmax) {
  CongestionController cc(CongestionControl::kCubic);
  cc.OnCongestionEvent(100 * kMss, kMss, false);
  // A second loss below the previous W_max (RFC 9438 4.7): W_max = cwnd * (1 + beta) / 2.
  cc.OnCongestionEvent(80 * kMss, kMss, false);
  EXPECT_DOUBLE_EQ(cc.w_max_segments(), 80 * 0.85);
  // Undo (RFC 9438 4.9) restores what was saved.
  const auto saved = cc.Save();
  cc.OnCongestionEvent(50 * kMss, kMss, false);
  cc.Restore(saved);
  EXPECT_DOUBLE_EQ(cc.w_max_segments(), 80 * 0.85);
}

TEST(CubicTest, RenoGrowsOneSegmentPerWindow) {
  CongestionController cc(CongestionControl::kReno);
  EXPECT_EQ(cc.OnCongestionEvent(10 * kMss, kMss, false), 5 * kMss);
  Instant now = Instant::FromNanos(0);
  EXPECT_EQ(RunRtts(cc, &now, Duration::Millis(10), 10, 10 * kMss, 5 * kMss), 20 * kMss);
}

}  // namespace
}  // namespace shake::testing
