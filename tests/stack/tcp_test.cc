// Exact-segment tests of the TCP state machine in virtual time: handshake, close in every
// order, retransmission of each handshake and close segment, resets (RFC 9293, RFC 5961).
#include <gtest/gtest.h>
#include <netinet/tcp.h>  // Linux's TCP_ESTABLISHED... numbering, to check against

#include <set>

#include "tests/stack/tcp_harness.h"

namespace shake::testing {
namespace {

constexpr SeqNum kPeerIsn(0x80000000u);  // at 2^31, to exercise wrapping comparisons

wire::TcpOptions SynOptions(uint32_t tsval = 100) {
  wire::TcpOptions o;
  o.mss = 1460;
  o.sack_permitted = true;
  o.timestamp = wire::TcpTimestamp{tsval, 0};
  o.window_scale = 7;
  return o;
}

#define ADD_FAILURE_IF_MANY(out, s) \
  if ((out).size() != 1) ADD_FAILURE() << "sent: " << (s).ToString()

class TcpTest : public ::testing::Test {
 protected:
  Stack& stack() { return h_.stack(); }

  SocketId Listen(int backlog = 16) {
    auto s = stack().Open();
    EXPECT_TRUE(s.ok());
    EXPECT_TRUE(stack().Bind(*s, Endpoint{Ipv4Addr(), kServerPort}).ok());
    EXPECT_TRUE(stack().Listen(*s, backlog).ok());
    return *s;
  }

  // The peer's SYN to the listener, with an MSS option when `mss` is non-zero.
  Seg Syn(uint16_t mss = 0) const {
    Seg s;
    s.flags = f::kSyn;
    s.seq = peer_isn_;
    if (mss != 0) s.options.mss = mss;
    return s;
  }

  // The peer's segments carry timestamps when the handshake negotiated them.
  Seg PeerSeg(uint8_t flags, uint32_t seq_off, uint32_t ack_off, std::string_view data = {}) {
    Seg s;
    s.src_port = peer_port_;
    s.dst_port = local_port_;
    s.flags = flags;
    s.seq = peer_isn_ + seq_off;
    s.ack = iss_ + ack_off;
    s.window = 1000;  // scaled by 7 when negotiated: 128000 bytes
    if (with_ts_) s.options.timestamp = wire::TcpTimestamp{peer_ts_ += 10, last_tsval_};
    s.payload = Bytes(data);
    return s;
  }

  // Passive open with options; leaves an accepted, ESTABLISHED socket in conn_.
  void PassiveOpen(bool options = true) {
    listener_ = Listen();
    with_ts_ = options;
    Seg syn = Syn();
    syn.window = 65535;
    if (options) syn.options = SynOptions(peer_ts_);
    auto out = h_.Deliver(syn);
    ASSERT_EQ(out.size(), 1u);
    const Seg& sa = out[0];
    ASSERT_EQ(sa.flags, f::kSyn | f::kAck);
    ASSERT_EQ(sa.ack, peer_isn_ + 1);
    iss_ = sa.seq;
    Remember(sa);
    out = h_.Deliver(PeerSeg(f::kAck, 1, 1));
    EXPECT_TRUE(out.empty());
    auto c = stack().Accept(listener_);
    ASSERT_TRUE(c.ok()) << c.error();
    conn_ = *c;
  }

  // Active open from the stack to the peer; leaves an ESTABLISHED socket in conn_.
  void ActiveOpen() {
    auto s = stack().Open();
    ASSERT_TRUE(s.ok());
    conn_ = *s;
    EXPECT_EQ(stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80}).error(), EINPROGRESS);
    auto out = h_.Flush();
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].flags, f::kSyn);
    iss_ = out[0].seq;
    local_port_ = out[0].src_port;
    peer_port_ = 80;
    Remember(out[0]);
    with_ts_ = true;
    Seg sa;
    sa.src_port = peer_port_;
    sa.dst_port = local_port_;
    sa.flags = f::kSyn | f::kAck;
    sa.seq = peer_isn_;
    sa.ack = iss_ + 1;
    sa.window = 65535;
    sa.options = SynOptions(peer_ts_);
    sa.options.timestamp->ecr = last_tsval_;
    out = h_.Deliver(sa);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].flags, f::kAck);
    EXPECT_EQ(out[0].seq, iss_ + 1);
    EXPECT_EQ(out[0].ack, peer_isn_ + 1);
    Remember(out[0]);
  }

  void Remember(const Seg& s) {
    if (s.options.timestamp) last_tsval_ = s.options.timestamp->val;
  }

  TcpState State() {
    auto info = stack().Info(conn_);
    EXPECT_TRUE(info.ok());
    return info.value().state;
  }
  size_t CountIn(TcpState s) { return stack().ConnectionsByState()[static_cast<size_t>(s)]; }

  std::vector<Seg> Expect1(std::vector<Seg> out, uint8_t flags, uint32_t seq_off,
                           uint32_t ack_off) {
    EXPECT_EQ(out.size(), 1u);
    for (const Seg& s : out) ADD_FAILURE_IF_MANY(out, s);
    if (out.size() == 1) {
      EXPECT_EQ(out[0].flags, flags) << out[0].ToString();
      EXPECT_EQ(out[0].seq, iss_ + seq_off) << out[0].ToString();
      if (flags & f::kAck) {
        EXPECT_EQ(out[0].ack, peer_isn_ + ack_off) << out[0].ToString();
      }
      Remember(out[0]);
    }
    return out;
  }

  TcpHarness h_;
  SocketId listener_ = kNoSocket;
  SocketId conn_ = kNoSocket;
  SeqNum iss_;
  SeqNum peer_isn_ = kPeerIsn;
  uint16_t peer_port_ = kPeerPort;
  uint16_t local_port_ = kServerPort;
  uint32_t peer_ts_ = 100;
  uint32_t last_tsval_ = 0;
  bool with_ts_ = false;
};

// ---- Handshake -----------------------------------------------------------------------------

TEST_F(TcpTest, PassiveOpenNegotiatesOptions) {
  listener_ = Listen();
  Seg syn = Syn();
  syn.options = SynOptions(100);
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  const Seg& sa = out[0];
  EXPECT_EQ(sa.flags, f::kSyn | f::kAck);
  EXPECT_EQ(sa.ack, peer_isn_ + 1);
  EXPECT_EQ(sa.src_port, kServerPort);
  EXPECT_EQ(sa.dst_port, kPeerPort);
  ASSERT_TRUE(sa.options.mss.has_value());
  EXPECT_EQ(*sa.options.mss, 1460);
  EXPECT_TRUE(sa.options.sack_permitted);
  ASSERT_TRUE(sa.options.timestamp.has_value());
  EXPECT_EQ(sa.options.timestamp->ecr, 100u);
  ASSERT_TRUE(sa.options.window_scale.has_value());
  EXPECT_EQ(*sa.options.window_scale, 1);  // 64 KiB buffer needs one shift
  EXPECT_EQ(CountIn(TcpState::kSynReceived), 1u);
  EXPECT_EQ(stack().Accept(listener_).error(), EAGAIN);

  iss_ = sa.seq;
  Remember(sa);
  with_ts_ = true;
  out = h_.Deliver(PeerSeg(f::kAck, 1, 1));
  EXPECT_TRUE(out.empty());
  auto c = stack().Accept(listener_);
  ASSERT_TRUE(c.ok());
  conn_ = *c;
  EXPECT_EQ(State(), TcpState::kEstablished);
  auto info = stack().Info(conn_).value();
  EXPECT_TRUE(info.sack_enabled);
  EXPECT_TRUE(info.timestamps_enabled);
  EXPECT_EQ(info.snd_wscale, 7);
  EXPECT_EQ(info.mss, 1460 - 12);
  EXPECT_EQ(info.remote, (Endpoint{kPeer, kPeerPort}));
}

TEST_F(TcpTest, ActiveOpenSendsOptionsAndAcksSynAck) {
  auto s = stack().Open();
  ASSERT_TRUE(s.ok());
  conn_ = *s;
  EXPECT_EQ(stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80}).error(), EINPROGRESS);
  EXPECT_EQ(State(), TcpState::kSynSent);
  EXPECT_EQ(stack().Readiness(conn_) & ready::kWritable, 0u);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kSyn);
  EXPECT_GE(out[0].src_port, 32768);
  EXPECT_EQ(out[0].dst_port, 80);
  EXPECT_EQ(out[0].options.mss, std::optional<uint16_t>(1460));
  EXPECT_TRUE(out[0].options.sack_permitted);
  ASSERT_TRUE(out[0].options.timestamp.has_value());
  EXPECT_EQ(out[0].options.timestamp->ecr, 0u);
  EXPECT_TRUE(out[0].options.window_scale.has_value());
  stack().Close(h_.now(), conn_);
  ActiveOpen();
  EXPECT_EQ(State(), TcpState::kEstablished);
  EXPECT_NE(stack().Readiness(conn_) & ready::kWritable, 0u);
  EXPECT_EQ(stack().TakeError(conn_), 0);
}

TEST_F(TcpTest, SynAckEchoesOnlyOfferedOptions) {
  listener_ = Listen();
  Seg syn = Syn();
  syn.options.mss = 1000;
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].options.mss, std::optional<uint16_t>(1460));
  EXPECT_FALSE(out[0].options.sack_permitted);
  EXPECT_FALSE(out[0].options.timestamp.has_value());
  EXPECT_FALSE(out[0].options.window_scale.has_value());
}

TEST_F(TcpTest, SimultaneousOpen) {
  auto s = stack().Open();
  conn_ = *s;
  EXPECT_EQ(stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80}).error(), EINPROGRESS);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  iss_ = out[0].seq;
  local_port_ = out[0].src_port;
  peer_port_ = 80;
  // The peer's own SYN crosses ours.
  Seg syn;
  syn.src_port = 80;
  syn.dst_port = local_port_;
  syn.flags = f::kSyn;
  syn.seq = peer_isn_;
  syn.options.mss = 1460;
  out = h_.Deliver(syn);
  Expect1(out, f::kSyn | f::kAck, 0, 1);  // SYN-ACK reuses our ISS
  EXPECT_EQ(State(), TcpState::kSynReceived);
  // The peer's SYN-ACK for our SYN.
  Seg sa = syn;
  sa.flags = f::kSyn | f::kAck;
  sa.ack = iss_ + 1;
  out = h_.Deliver(sa);
  EXPECT_EQ(State(), TcpState::kEstablished);
  Expect1(out, f::kAck, 1, 1);
}

TEST_F(TcpTest, ConnectToClosedPortIsRefused) {
  auto s = stack().Open();
  conn_ = *s;
  (void)stack().Connect(h_.now(), conn_, Endpoint{kPeer, 81});
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  Seg rst;
  rst.src_port = 81;
  rst.dst_port = out[0].src_port;
  rst.flags = f::kRst | f::kAck;
  rst.seq = SeqNum(0);
  rst.ack = out[0].seq + 1;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(State(), TcpState::kClosed);
  EXPECT_NE(stack().Readiness(conn_) & ready::kError, 0u);
  EXPECT_EQ(stack().TakeError(conn_), ECONNREFUSED);
  EXPECT_EQ(CountIn(TcpState::kSynSent), 0u);
}

TEST_F(TcpTest, SynToClosedPortGetsRstAck) {
  Seg syn = Syn();
  syn.dst_port = 9;
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst | f::kAck);
  EXPECT_EQ(out[0].seq, SeqNum(0));
  EXPECT_EQ(out[0].ack, peer_isn_ + 1);
  EXPECT_EQ(stack().counters().dropped(Drop::kNoConnection), 1u);
}

TEST_F(TcpTest, RstToClosedPortIsNotAnswered) {
  Seg rst;
  rst.flags = f::kRst;
  rst.seq = peer_isn_;
  rst.dst_port = 9;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  rst.flags = f::kRst | f::kAck;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(stack().counters().tcp_resets_out, 0u);
}

TEST_F(TcpTest, SynRetransmittedWithBackoffThenTimesOut) {
  auto s = stack().Open();
  conn_ = *s;
  (void)stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80});
  const Instant t0 = h_.now();
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  const SeqNum iss = out[0].seq;
  // RFC 6298 (2.1) initial RTO of 1 s, doubling: 1, 2, 4, 8, 16, 32; give up after 6.
  int64_t expected_ms = 0;
  for (int i = 0; i < 6; ++i) {
    expected_ms += 1000LL << i;
    EXPECT_TRUE(h_.AdvanceTo(t0 + Duration::Millis(expected_ms - 1)).empty());
    out = h_.AdvanceTo(t0 + Duration::Millis(expected_ms));
    ASSERT_EQ(out.size(), 1u) << "retransmission " << i;
    EXPECT_EQ(out[0].flags, f::kSyn);
    EXPECT_EQ(out[0].seq, iss);
  }
  EXPECT_EQ(State(), TcpState::kSynSent);
  out = h_.AdvanceTo(t0 + Duration::Millis(expected_ms + 64000));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(State(), TcpState::kClosed);
  EXPECT_EQ(stack().TakeError(conn_), ETIMEDOUT);
}

TEST_F(TcpTest, LostSynRecoveredByRetransmission) {
  auto s = stack().Open();
  conn_ = *s;
  (void)stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80});
  auto first = h_.Flush();  // lost on the wire
  ASSERT_EQ(first.size(), 1u);
  auto again = h_.Advance(Duration::Seconds(1));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].seq, first[0].seq);
  iss_ = first[0].seq;
  local_port_ = first[0].src_port;
  peer_port_ = 80;
  Seg sa;
  sa.src_port = 80;
  sa.dst_port = local_port_;
  sa.flags = f::kSyn | f::kAck;
  sa.seq = peer_isn_;
  sa.ack = iss_ + 1;
  sa.options.mss = 1460;
  Expect1(h_.Deliver(sa), f::kAck, 1, 1);
  EXPECT_EQ(State(), TcpState::kEstablished);
}

TEST_F(TcpTest, LostSynAckRecoveredByRetransmission) {
  listener_ = Listen();
  Seg syn = Syn(1460);
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  iss_ = out[0].seq;
  // The SYN-ACK is lost: it comes again after the initial RTO, then after 2 s more.
  EXPECT_TRUE(h_.Advance(Duration::Millis(999)).empty());
  Expect1(h_.Advance(Duration::Millis(1)), f::kSyn | f::kAck, 0, 1);
  EXPECT_TRUE(h_.Advance(Duration::Millis(1999)).empty());
  Expect1(h_.Advance(Duration::Millis(1)), f::kSyn | f::kAck, 0, 1);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 1)).empty());
  EXPECT_TRUE(stack().Accept(listener_).ok());
}

TEST_F(TcpTest, RetransmittedSynGetsSynAckAgain) {
  listener_ = Listen();
  Seg syn = Syn();
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  iss_ = out[0].seq;
  Expect1(h_.Deliver(syn), f::kSyn | f::kAck, 0, 1);
  EXPECT_EQ(CountIn(TcpState::kSynReceived), 1u);
}

TEST_F(TcpTest, LostFinalAckRecoveredBySynAckRetransmission) {
  listener_ = Listen();
  Seg syn = Syn(1460);
  auto out = h_.Deliver(syn);
  iss_ = out[0].seq;
  // The peer's final ACK is lost; the server retransmits its SYN-ACK and the peer ACKs again.
  Expect1(h_.Advance(Duration::Seconds(1)), f::kSyn | f::kAck, 0, 1);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 1)).empty());
  EXPECT_TRUE(stack().Accept(listener_).ok());
}

TEST_F(TcpTest, LostFinalAckRecoveredByFirstDataSegment) {
  listener_ = Listen();
  Seg syn = Syn(1460);
  auto out = h_.Deliver(syn);
  iss_ = out[0].seq;
  // The first data segment carries the ACK that completes the handshake.
  out = h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1, 1, "hello"));
  auto c = stack().Accept(listener_);
  ASSERT_TRUE(c.ok());
  std::byte buf[16];
  auto n = stack().Recv(*c, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);
}

TEST_F(TcpTest, StaleSynLeavesNoHalfOpenConnection) {
  // An old duplicate SYN arrives; we cannot tell it is stale and answer SYN-ACK. The peer, who
  // has no such connection, answers with RST (RFC 9293 3.5 figure 9), and the embryonic
  // connection is dropped: nothing half-open remains.
  listener_ = Listen();
  Seg syn = Syn();
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  iss_ = out[0].seq;
  Seg rst;
  rst.flags = f::kRst;
  rst.seq = out[0].ack;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(CountIn(TcpState::kSynReceived), 0u);
  EXPECT_TRUE(h_.Advance(Duration::Seconds(10)).empty()) << "no SYN-ACK retransmission";
  EXPECT_EQ(stack().Accept(listener_).error(), EAGAIN);
}

TEST_F(TcpTest, StaleSynAckInSynSentGetsRstAndConnectionStillOpens) {
  auto s = stack().Open();
  conn_ = *s;
  (void)stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80});
  auto out = h_.Flush();
  iss_ = out[0].seq;
  local_port_ = out[0].src_port;
  peer_port_ = 80;
  // A SYN-ACK acknowledging some other, older SYN: <SEQ=SEG.ACK><CTL=RST>.
  Seg stale;
  stale.src_port = 80;
  stale.dst_port = local_port_;
  stale.flags = f::kSyn | f::kAck;
  stale.seq = peer_isn_ + 5000;
  stale.ack = iss_ - 1000;
  out = h_.Deliver(stale);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(out[0].seq, iss_ - 1000);
  EXPECT_EQ(State(), TcpState::kSynSent);
  // The real SYN-ACK still opens the connection.
  Seg sa = stale;
  sa.seq = peer_isn_;
  sa.ack = iss_ + 1;
  Expect1(h_.Deliver(sa), f::kAck, 1, 1);
  EXPECT_EQ(State(), TcpState::kEstablished);
}

TEST_F(TcpTest, SynAckForNoConnectionGetsRst) {
  Seg sa;
  sa.src_port = 80;
  sa.dst_port = 45000;
  sa.flags = f::kSyn | f::kAck;
  sa.seq = peer_isn_;
  sa.ack = SeqNum(12345);
  auto out = h_.Deliver(sa);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
  EXPECT_EQ(out[0].seq, SeqNum(12345));
}

TEST_F(TcpTest, RstInSynSentWithoutAckIsIgnored) {
  auto s = stack().Open();
  conn_ = *s;
  (void)stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80});
  auto out = h_.Flush();
  Seg rst;
  rst.src_port = 80;
  rst.dst_port = out[0].src_port;
  rst.flags = f::kRst;
  rst.seq = peer_isn_;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(State(), TcpState::kSynSent);
  // An RST whose ACK does not acknowledge our SYN is ignored too (RFC 9293 3.10.7.3).
  rst.flags = f::kRst | f::kAck;
  rst.ack = out[0].seq + 7;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(State(), TcpState::kSynSent);
}

TEST_F(TcpTest, ListenBacklogOverflowDropsSyn) {
  listener_ = Listen(/*backlog=*/1);
  // Linux keeps backlog + 1 established connections waiting; further SYNs are dropped.
  for (uint16_t i = 0; i < 3; ++i) {
    Seg syn;
    syn.src_port = static_cast<uint16_t>(kPeerPort + i);
    syn.flags = f::kSyn;
    syn.seq = peer_isn_;
    auto out = h_.Deliver(syn);
    if (i < 2) {
      ASSERT_EQ(out.size(), 1u) << i;
      Seg ack;
      ack.src_port = syn.src_port;
      ack.flags = f::kAck;
      ack.seq = peer_isn_ + 1;
      ack.ack = out[0].seq + 1;
      EXPECT_TRUE(h_.Deliver(ack).empty());
    } else {
      EXPECT_TRUE(out.empty()) << "SYN beyond the backlog must be dropped";
    }
  }
  EXPECT_EQ(stack().counters().dropped(Drop::kAcceptQueueFull), 1u);
  EXPECT_TRUE(stack().Accept(listener_).ok());
  EXPECT_TRUE(stack().Accept(listener_).ok());
  EXPECT_EQ(stack().Accept(listener_).error(), EAGAIN);
}

// ---- Close ---------------------------------------------------------------------------------

TEST_F(TcpTest, ActiveCloseThroughTimeWait) {
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  EXPECT_EQ(CountIn(TcpState::kFinWait1), 1u);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 2)).empty());
  EXPECT_EQ(CountIn(TcpState::kFinWait2), 1u);
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2)), f::kAck, 2, 2);
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
  EXPECT_TRUE(h_.Advance(Duration::Seconds(59)).empty());
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
  EXPECT_TRUE(h_.Advance(Duration::Seconds(1)).empty());
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 0u);
}

TEST_F(TcpTest, PassiveClose) {
  PassiveOpen();
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 1)), f::kAck, 1, 2);
  EXPECT_EQ(State(), TcpState::kCloseWait);
  EXPECT_NE(stack().Readiness(conn_) & ready::kReadHangup, 0u);
  std::byte buf[8];
  auto n = stack().Recv(conn_, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 2);
  EXPECT_EQ(CountIn(TcpState::kLastAck), 1u);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 2, 2)).empty());
  EXPECT_EQ(CountIn(TcpState::kLastAck), 0u);
  EXPECT_EQ(CountIn(TcpState::kClosed), 0u);
}

TEST(TcpStateNumbers, MatchLinuxTcpInfo) {
  EXPECT_EQ(LinuxStateNumber(TcpState::kEstablished), TCP_ESTABLISHED);
  EXPECT_EQ(LinuxStateNumber(TcpState::kSynSent), TCP_SYN_SENT);
  EXPECT_EQ(LinuxStateNumber(TcpState::kSynReceived), TCP_SYN_RECV);
  EXPECT_EQ(LinuxStateNumber(TcpState::kFinWait1), TCP_FIN_WAIT1);
  EXPECT_EQ(LinuxStateNumber(TcpState::kFinWait2), TCP_FIN_WAIT2);
  EXPECT_EQ(LinuxStateNumber(TcpState::kTimeWait), TCP_TIME_WAIT);
  EXPECT_EQ(LinuxStateNumber(TcpState::kClosed), TCP_CLOSE);
  EXPECT_EQ(LinuxStateNumber(TcpState::kCloseWait), TCP_CLOSE_WAIT);
  EXPECT_EQ(LinuxStateNumber(TcpState::kLastAck), TCP_LAST_ACK);
  EXPECT_EQ(LinuxStateNumber(TcpState::kListen), TCP_LISTEN);
  EXPECT_EQ(LinuxStateNumber(TcpState::kClosing), TCP_CLOSING);
}

TEST_F(TcpTest, SimultaneousCloseGoesThroughClosing) {
  PassiveOpen();
  EXPECT_EQ(stack().ClosesInProgress(), 0u);
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  EXPECT_EQ(stack().ClosesInProgress(), 1u) << "FIN-WAIT-1: our FIN is not acknowledged";
  // The peer's FIN crosses ours: it does not acknowledge our FIN.
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 1)), f::kAck, 2, 2);
  EXPECT_EQ(CountIn(TcpState::kClosing), 1u);
  EXPECT_EQ(stack().ClosesInProgress(), 1u) << "CLOSING";
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 2, 2)).empty());
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
  EXPECT_EQ(stack().ClosesInProgress(), 0u) << "TIME-WAIT: nothing left to deliver";
}

TEST_F(TcpTest, FinAndAckCombinedWhenNothingPending) {
  // The peer answers our FIN with one segment carrying FIN and the ACK of ours.
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2)), f::kAck, 2, 2);
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
}

TEST_F(TcpTest, HalfCloseKeepsTheOtherDirectionOpen) {
  PassiveOpen();
  // The peer is done sending; we keep sending.
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 1)), f::kAck, 1, 2);
  auto sent = stack().Send(conn_, Bytes("after your FIN"));
  ASSERT_TRUE(sent.ok());
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].payload, Bytes("after your FIN"));
  EXPECT_EQ(out[0].ack, peer_isn_ + 2);
  // And the other way round: we shut our side, the peer keeps sending to us.
  TcpHarness& h = h_;
  (void)h;
}

TEST_F(TcpTest, ShutdownWriteStillReceives) {
  PassiveOpen();
  ASSERT_TRUE(stack().Shutdown(h_.now(), conn_, false, true).ok());
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 2)).empty());
  EXPECT_EQ(State(), TcpState::kFinWait2);
  h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1, 2, "still talking"));
  std::byte buf[32];
  auto n = stack().Recv(conn_, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 13u);
  EXPECT_EQ(stack().Send(conn_, Bytes("x")).error(), EPIPE);
  // Not an orphan: FIN-WAIT-2 waits for the peer's FIN as long as it takes.
  EXPECT_TRUE(h_.Advance(Duration::Seconds(120)).size() <= 1u);
  EXPECT_EQ(State(), TcpState::kFinWait2);
}

TEST_F(TcpTest, FinLostInFinWait1IsRetransmitted) {
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  // The handshake measured an RTT of zero (virtual time), so the RTO is the 200 ms floor.
  EXPECT_TRUE(h_.Advance(Duration::Millis(199)).empty());
  auto out = h_.Advance(Duration::Millis(1));
  Expect1(out, f::kFin | f::kAck, 1, 1);
  EXPECT_EQ(stack().counters().tcp_retransmits, 1u);
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2)), f::kAck, 2, 2);
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
}

TEST_F(TcpTest, FinLostInLastAckIsRetransmitted) {
  PassiveOpen();
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 1)), f::kAck, 1, 2);
  stack().Close(h_.now(), conn_);
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 2);
  // A tail loss probe resends the FIN when the RTO would have (RFC 8985 7.2: the PTO of a
  // lone segment, 2 * SRTT + 200 ms, is capped by the RTO, 200 ms after a zero RTT), as Linux
  // does; the RTO then counts from the probe, then backs off to 400 ms.
  Expect1(h_.Advance(Duration::Millis(200)), f::kFin | f::kAck, 1, 2);
  EXPECT_EQ(stack().counters().tcp_loss_probes, 1u);
  EXPECT_TRUE(h_.Advance(Duration::Millis(199)).empty());
  Expect1(h_.Advance(Duration::Millis(1)), f::kFin | f::kAck, 1, 2);
  EXPECT_EQ(stack().counters().tcp_rto_expirations, 1u);
  EXPECT_TRUE(h_.Advance(Duration::Millis(399)).empty());
  Expect1(h_.Advance(Duration::Millis(1)), f::kFin | f::kAck, 1, 2);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 2, 2)).empty());
  EXPECT_EQ(CountIn(TcpState::kLastAck), 0u);
}

TEST_F(TcpTest, TimeWaitReAcksRetransmittedFinAndRestarts) {
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  h_.Flush();
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2)), f::kAck, 2, 2);
  h_.Advance(Duration::Seconds(30));
  // Our last ACK was lost; the peer's FIN comes again and is ACKed again.
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2)), f::kAck, 2, 2);
  // 2*MSL counts again from here: still in TIME-WAIT 59 s later, 90 s after entering it.
  h_.Advance(Duration::Seconds(59));
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 1u);
  h_.Advance(Duration::Seconds(1));
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 0u);
  // Afterwards the 4-tuple is unknown: a segment for it draws a reset.
  auto out = h_.Deliver(PeerSeg(f::kAck, 2, 2));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst);
}

TEST_F(TcpTest, TimeWaitAcceptsNewerSyn) {
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  h_.Flush();
  h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2));
  ASSERT_EQ(CountIn(TcpState::kTimeWait), 1u);
  Seg syn;
  syn.flags = f::kSyn;
  syn.seq = peer_isn_ + 100000;
  syn.options = SynOptions(peer_ts_ + 1000);
  auto out = h_.Deliver(syn);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kSyn | f::kAck);
  EXPECT_EQ(out[0].ack, syn.seq + 1);
  EXPECT_EQ(CountIn(TcpState::kTimeWait), 0u);
  EXPECT_EQ(stack().counters().tcp_time_wait_reused, 1u);
}

TEST_F(TcpTest, CloseWithUnreadDataSendsRst) {
  PassiveOpen();
  h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1, 1, "unread"));
  stack().Close(h_.now(), conn_);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst | f::kAck);
  EXPECT_EQ(out[0].seq, iss_ + 1);
  EXPECT_EQ(out[0].ack, peer_isn_ + 7);
  EXPECT_EQ(CountIn(TcpState::kEstablished), 0u);
  EXPECT_EQ(CountIn(TcpState::kFinWait1), 0u);
}

TEST_F(TcpTest, LingerZeroAborts) {
  PassiveOpen();
  SocketOptions o = stack().GetOptions(conn_).value();
  o.linger = true;
  o.linger_time = Duration::Zero();
  ASSERT_TRUE(stack().SetOptions(conn_, o).ok());
  stack().Close(h_.now(), conn_);
  auto out = h_.Flush();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags, f::kRst | f::kAck);
}

TEST_F(TcpTest, OrphanFinWait2TimesOut) {
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  h_.Flush();
  h_.Deliver(PeerSeg(f::kAck, 1, 2));
  EXPECT_EQ(CountIn(TcpState::kFinWait2), 1u);
  h_.Advance(Duration::Seconds(60));
  EXPECT_EQ(CountIn(TcpState::kFinWait2), 0u);
}

// ---- Resets (RFC 9293 3.10.7.4, RFC 5961 3) --------------------------------------------------

TEST_F(TcpTest, ExactRstResetsConnection) {
  PassiveOpen();
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kRst, 1, 0)).empty());
  EXPECT_EQ(State(), TcpState::kClosed);
  std::byte buf[4];
  EXPECT_EQ(stack().Recv(conn_, buf).error(), ECONNRESET);
  auto n = stack().Recv(conn_, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(stack().counters().tcp_resets_in, 1u);
}

TEST_F(TcpTest, InWindowRstGetsRateLimitedChallengeAck) {
  PassiveOpen();
  Expect1(h_.Deliver(PeerSeg(f::kRst, 100, 0)), f::kAck, 1, 1);
  EXPECT_EQ(State(), TcpState::kEstablished);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kRst, 200, 0)).empty()) << "rate limited";
  EXPECT_EQ(stack().counters().tcp_challenge_acks, 1u);
  EXPECT_EQ(stack().counters().tcp_challenge_acks_limited, 1u);
  h_.Advance(Duration::Millis(500));
  Expect1(h_.Deliver(PeerSeg(f::kRst, 300, 0)), f::kAck, 1, 1);
}

TEST_F(TcpTest, AckOfUnsentDataIsDroppedAnsweredAndCounted) {
  // RFC 9293 3.10.7.4 and RFC 5961 5.2: an ACK above SND.NXT (an optimistic ACK of data not yet
  // sent) draws an ACK and the segment, its data included, is dropped; the send queue keeps
  // every byte. Rate-limited as the other challenge ACKs.
  PassiveOpen();
  ASSERT_TRUE(stack().Send(conn_, Bytes("0123456789")).ok());
  ASSERT_EQ(h_.Flush().size(), 1u);
  Expect1(h_.Deliver(PeerSeg(f::kAck, 1, 1 + 10 + 5000, "data")), f::kAck, 11, 1);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 1 + 10 + 1)).empty()) << "rate limited";
  EXPECT_EQ(stack().counters().dropped(Drop::kAckUnsent), 2u);
  EXPECT_EQ(stack().counters().dropped(Drop::kBadAck), 0u);
  EXPECT_EQ(stack().counters().tcp_challenge_acks, 1u);
  EXPECT_EQ(stack().counters().tcp_challenge_acks_limited, 1u);
  auto info = stack().Info(conn_);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().unsent_bytes, 10u);
  EXPECT_EQ(info.value().readable_bytes, 0u);
  // The real ACK still counts.
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 11)).empty());
  EXPECT_EQ(stack().Info(conn_).value().unsent_bytes, 0u);
}

TEST_F(TcpTest, OutOfWindowRstIsIgnored) {
  PassiveOpen();
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kRst, 10'000'000, 0)).empty());
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kRst, 0, 0)).empty());  // below RCV.NXT
  EXPECT_EQ(State(), TcpState::kEstablished);
  EXPECT_EQ(stack().counters().tcp_challenge_acks, 0u);
}

TEST_F(TcpTest, SynInEstablishedGetsChallengeAck) {
  PassiveOpen();
  Seg syn = PeerSeg(f::kSyn, 500, 0);
  syn.options = SynOptions(peer_ts_ + 5);
  Expect1(h_.Deliver(syn), f::kAck, 1, 1);
  EXPECT_EQ(State(), TcpState::kEstablished);
}

TEST_F(TcpTest, RstInSynReceivedReturnsToListen) {
  listener_ = Listen();
  Seg syn = Syn();
  auto out = h_.Deliver(syn);
  iss_ = out[0].seq;
  Seg rst;
  rst.flags = f::kRst;
  rst.seq = peer_isn_ + 1;
  EXPECT_TRUE(h_.Deliver(rst).empty());
  EXPECT_EQ(CountIn(TcpState::kSynReceived), 0u);
  // The listener still works.
  syn.src_port = kPeerPort + 1;
  EXPECT_EQ(h_.Deliver(syn).size(), 1u);
}

TEST_F(TcpTest, AckForUnsentDataIsAnsweredAndDropped) {
  PassiveOpen();
  Expect1(h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1, 5000, "data")), f::kAck, 1, 1);
  std::byte buf[8];
  EXPECT_EQ(stack().Recv(conn_, buf).error(), EAGAIN) << "the segment must be dropped";
}

TEST_F(TcpTest, OutOfWindowDataGetsDuplicateAck) {
  PassiveOpen();
  Expect1(h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1'000'000, 1, "far")), f::kAck, 1, 1);
  Expect1(h_.Deliver(PeerSeg(f::kAck | f::kPsh, 1'000'000, 1, "far")), f::kAck, 1, 1);
}


// Every state change and segment is reported to the observer, for `shake trace`.
class Recorder final : public StackObserver {
 public:
  void OnTrace(const TraceEvent& e) override {
    if (e.kind == TraceEvent::Kind::kStateChange) {
      states.push_back(std::string(StateName(e.from)) + ">" + std::string(StateName(e.to)));
    } else if (e.kind == TraceEvent::Kind::kSegmentIn) {
      ++in;
    } else if (e.kind == TraceEvent::Kind::kSegmentOut) {
      ++out;
    }
  }
  void OnReadiness(SocketId) override { ++readiness; }
  std::vector<std::string> states;
  int in = 0, out = 0, readiness = 0;
};

class TraceTest : public TcpTest {};

TEST_F(TraceTest, ObserverSeesEveryStateAndSegment) {
  Recorder rec;
  stack().SetObserver(&rec);
  PassiveOpen();
  stack().Close(h_.now(), conn_);
  h_.Flush();
  h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2));
  h_.Advance(Duration::Seconds(60));
  EXPECT_EQ(rec.states,
            (std::vector<std::string>{"LISTEN>SYN-RECEIVED", "SYN-RECEIVED>ESTABLISHED",
                                      "ESTABLISHED>FIN-WAIT-1",
                                      // The FIN-ACK's ACK is processed before its FIN.
                                      "FIN-WAIT-1>FIN-WAIT-2", "FIN-WAIT-2>TIME-WAIT",
                                      "TIME-WAIT>CLOSED"}));
  EXPECT_EQ(rec.in, 3);   // SYN, ACK, FIN
  EXPECT_EQ(rec.out, 3);  // SYN-ACK, FIN, ACK
  EXPECT_GT(rec.readiness, 0);
  stack().SetObserver(nullptr);
}

// Segment events carry the segment's options, the retransmission mark and the RFC 5961
// challenge mark (what `shake trace` draws).
class SegmentRecorder final : public StackObserver {
 public:
  void OnTrace(const TraceEvent& e) override {
    if (e.kind == TraceEvent::Kind::kSegmentIn || e.kind == TraceEvent::Kind::kSegmentOut) {
      events.push_back(e);
    }
  }
  std::vector<TraceEvent> events;
};

TEST_F(TraceTest, SegmentEventsCarryOptionsRetransmissionsAndChallenges) {
  SegmentRecorder rec;
  stack().SetObserver(&rec);
  PassiveOpen();
  ASSERT_GE(rec.events.size(), 3u);
  const TraceEvent& syn = rec.events[0];
  EXPECT_EQ(syn.kind, TraceEvent::Kind::kSegmentIn);
  EXPECT_EQ(syn.options.mss, std::optional<uint16_t>(1460));
  EXPECT_EQ(syn.options.window_scale, std::optional<uint8_t>(7));
  EXPECT_TRUE(syn.options.sack_permitted);
  const TraceEvent& synack = rec.events[1];
  EXPECT_EQ(synack.kind, TraceEvent::Kind::kSegmentOut);
  EXPECT_EQ(synack.options.mss, std::optional<uint16_t>(1460));
  ASSERT_TRUE(synack.options.timestamp.has_value());
  EXPECT_EQ(synack.options.timestamp->ecr, 100u);
  EXPECT_FALSE(synack.retransmit);
  EXPECT_FALSE(synack.challenge_ack);

  // Data, lost: its first transmission is not a retransmission; the resends (a tail loss
  // probe, then the RTO's) are.
  rec.events.clear();
  ASSERT_TRUE(stack().Send(conn_, Bytes("abc")).ok());
  ASSERT_EQ(h_.Flush().size(), 1u);
  ASSERT_GE(h_.Advance(Duration::Seconds(1)).size(), 1u);
  ASSERT_GE(rec.events.size(), 2u);
  EXPECT_EQ(rec.events[0].len, 3u);
  EXPECT_FALSE(rec.events[0].retransmit);
  for (size_t i = 1; i < rec.events.size(); ++i) {
    EXPECT_TRUE(rec.events[i].retransmit) << i;
    EXPECT_EQ(rec.events[i].seq, rec.events[0].seq);
    EXPECT_TRUE(rec.events[i].options.timestamp.has_value());
  }
  h_.Deliver(PeerSeg(f::kAck, 1, 4));

  // An in-window RST that is not exact draws a challenge ACK (RFC 5961 3.2).
  rec.events.clear();
  Expect1(h_.Deliver(PeerSeg(f::kRst, 10, 0)), f::kAck, 4, 1);
  ASSERT_EQ(rec.events.size(), 2u);
  EXPECT_TRUE(rec.events[1].challenge_ack);
  EXPECT_FALSE(rec.events[1].retransmit);
  // A segment failing PAWS gets a duplicate ACK under the same limit, but not a challenge.
  h_.Advance(Duration::Seconds(1));
  rec.events.clear();
  Seg old = PeerSeg(f::kAck, 1, 4);
  old.options.timestamp->val = 1;
  Expect1(h_.Deliver(old), f::kAck, 4, 1);
  ASSERT_EQ(rec.events.size(), 2u);
  EXPECT_FALSE(rec.events[1].challenge_ack);
  stack().SetObserver(nullptr);
}


class PortTest : public TcpTest {};

TEST_F(PortTest, EphemeralPortsNeverReuseALiveOrTimeWaitTuple) {
  // A connection to the peer ends in TIME-WAIT on our side...
  ActiveOpen();
  const uint16_t first = local_port_;
  stack().Close(h_.now(), conn_);
  h_.Flush();
  h_.Deliver(PeerSeg(f::kFin | f::kAck, 1, 2));
  ASSERT_EQ(CountIn(TcpState::kTimeWait), 1u);
  // ...and 200 more connections to the same remote endpoint all get other ports.
  std::set<uint16_t> ports{first};
  for (int i = 0; i < 200; ++i) {
    auto s = stack().Open();
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(stack().Connect(h_.now(), *s, Endpoint{kPeer, 80}).error(), EINPROGRESS);
    auto info = stack().Info(*s).value();
    EXPECT_TRUE(ports.insert(info.local.port).second) << "port reused: " << info.local.port;
    EXPECT_GE(info.local.port, 32768);
    EXPECT_LE(info.local.port, 60999);
  }
}

TEST_F(PortTest, BindConflictsAndReuseAddr) {
  listener_ = Listen();
  auto s = stack().Open();
  EXPECT_EQ(stack().Bind(*s, Endpoint{Ipv4Addr(), kServerPort}).error(), EADDRINUSE);
  EXPECT_EQ(stack().Bind(*s, Endpoint{Ipv4Addr(198, 18, 0, 77), 81}).error(), EADDRNOTAVAIL);
  ASSERT_TRUE(stack().Bind(*s, Endpoint{kLocal, 81}).ok());
  EXPECT_EQ(stack().Bind(*s, Endpoint{kLocal, 82}).error(), EINVAL) << "already bound";
  // A closed listener's port can be bound again at once.
  stack().Close(h_.now(), listener_);
  auto t = stack().Open();
  EXPECT_TRUE(stack().Bind(*t, Endpoint{Ipv4Addr(), kServerPort}).ok());
}

TEST_F(PortTest, ConnectErrors) {
  auto s = stack().Open();
  EXPECT_EQ(stack().Connect(h_.now(), *s, Endpoint{Ipv4Addr(8, 8, 8, 8), 80}).error(), ENETUNREACH)
      << "off-subnet without a gateway";
  EXPECT_EQ(stack().Connect(h_.now(), *s, Endpoint{kPeer, 80}).error(), EINPROGRESS);
  EXPECT_EQ(stack().Connect(h_.now(), *s, Endpoint{kPeer, 80}).error(), EALREADY);
  std::byte buf[4];
  EXPECT_EQ(stack().Recv(*s, buf).error(), EAGAIN);
  EXPECT_EQ(stack().Send(*s, buf).error(), EAGAIN);
  auto fresh = stack().Open();
  EXPECT_EQ(stack().Recv(*fresh, buf).error(), ENOTCONN);
  EXPECT_EQ(stack().Send(*fresh, buf).error(), EPIPE) << "as Linux: send on an unconnected socket";
  EXPECT_EQ(stack().Shutdown(h_.now(), *fresh, false, true).error(), ENOTCONN);
}


class FinTest : public TcpTest {};

TEST_F(FinTest, FinWithDataInFinWait2IsAckedAtOnce) {
  // Only ESTABLISHED -> CLOSE-WAIT may delay the ACK of a FIN that carries data (Linux tcp_fin).
  PassiveOpen();
  ASSERT_TRUE(stack().Shutdown(h_.now(), conn_, false, true).ok());
  Expect1(h_.Flush(), f::kFin | f::kAck, 1, 1);
  EXPECT_TRUE(h_.Deliver(PeerSeg(f::kAck, 1, 2)).empty());
  Expect1(h_.Deliver(PeerSeg(f::kFin | f::kPsh | f::kAck, 1, 2, "bye")), f::kAck, 2, 5);
  EXPECT_EQ(State(), TcpState::kTimeWait);
}

}  // namespace
}  // namespace shake::testing
