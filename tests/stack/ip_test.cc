// The IP layer around TCP: ICMP echo, ICMP errors reaching connections (RFC 5927), ARP in
// Ethernet mode, and frames that are not for us.
#include <gtest/gtest.h>

#include "stack/wire/arp.h"
#include "stack/wire/ethernet.h"
#include "stack/wire/icmp.h"
#include "tests/stack/tcp_harness.h"

namespace shake::testing {
namespace {

std::vector<std::byte> IcmpPacket(const wire::IcmpMessage& m, Ipv4Addr src = kPeer) {
  std::vector<std::byte> frame(wire::kIpv4MinHeaderLen + wire::kIcmpHeaderLen + m.payload.size());
  wire::Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(frame.size());
  ip.protocol = wire::kProtoIcmp;
  ip.src = src;
  ip.dst = kLocal;
  wire::EmitIpv4(frame, ip);
  wire::EmitIcmp(std::span(frame).subspan(wire::kIpv4MinHeaderLen), m);
  return frame;
}

TEST(IpTest, AnswersEchoRequest) {
  TcpHarness h;
  std::vector<std::byte> data = Bytes("ping payload");
  wire::IcmpMessage m;
  m.type = wire::kIcmpEchoRequest;
  m.rest = 0x12340001;
  m.payload = data;
  CollectSink sink;
  h.stack().Receive(h.now(), IcmpPacket(m), sink);
  ASSERT_EQ(sink.frames.size(), 1u);
  wire::Ipv4Header ip;
  wire::Bytes payload;
  ASSERT_EQ(wire::ParseIpv4(sink.frames[0], &ip, &payload), Drop::kNone);
  EXPECT_EQ(ip.dst, kPeer);
  wire::IcmpMessage reply;
  ASSERT_EQ(wire::ParseIcmp(payload, &reply), Drop::kNone);
  EXPECT_EQ(reply.type, wire::kIcmpEchoReply);
  EXPECT_EQ(reply.rest, 0x12340001u);
  EXPECT_TRUE(std::equal(reply.payload.begin(), reply.payload.end(), data.begin(), data.end()));
}

class IcmpErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = h_.stack().Open();
    conn_ = *s;
    (void)h_.stack().Connect(h_.now(), conn_, Endpoint{kPeer, 80});
    auto out = h_.Flush();
    ASSERT_EQ(out.size(), 1u);
    syn_ = out[0];
  }
  // An ICMP error quoting our SYN, with the quoted sequence number `seq`.
  std::vector<std::byte> ErrorFor(uint8_t type, uint8_t code, SeqNum seq, uint32_t rest = 0) {
    Seg quoted = syn_;
    quoted.seq = seq;
    std::vector<std::byte> q = TcpHarness::Build(quoted, kLocal, kPeer);
    q.resize(wire::kIpv4MinHeaderLen + 8);
    wire::IcmpMessage m;
    m.type = type;
    m.code = code;
    m.rest = rest;
    m.payload = q;
    return IcmpPacket(m);
  }
  TcpState State() { return h_.stack().Info(conn_).value().state; }
  // The peer's SYN-ACK completes the handshake.
  void Establish() {
    Seg sa;
    sa.src_port = 80;
    sa.dst_port = syn_.src_port;
    sa.flags = f::kSyn | f::kAck;
    sa.seq = SeqNum(5000);
    sa.ack = syn_.seq + 1;
    sa.options.mss = 1460;
    h_.Deliver(sa);
  }

  TcpHarness h_;
  SocketId conn_ = kNoSocket;
  Seg syn_;
};

TEST_F(IcmpErrorTest, PortUnreachableAbortsConnectionAttempt) {
  h_.DeliverFrame(ErrorFor(wire::kIcmpDestUnreachable, wire::kIcmpPortUnreachable, syn_.seq));
  EXPECT_EQ(State(), TcpState::kClosed);
  EXPECT_EQ(h_.stack().TakeError(conn_), ECONNREFUSED);
  EXPECT_EQ(h_.stack().counters().icmp_errors_delivered, 1u);
}

TEST_F(IcmpErrorTest, ForgedSequenceNumberIsIgnored) {
  h_.DeliverFrame(
      ErrorFor(wire::kIcmpDestUnreachable, wire::kIcmpPortUnreachable, syn_.seq + 100000));
  EXPECT_EQ(State(), TcpState::kSynSent);
  EXPECT_EQ(h_.stack().counters().dropped(Drop::kIcmpIgnored), 1u);
}

TEST_F(IcmpErrorTest, HostUnreachableIsSoftAndReportedAtTimeout) {
  h_.DeliverFrame(ErrorFor(wire::kIcmpDestUnreachable, wire::kIcmpHostUnreachable, syn_.seq));
  EXPECT_EQ(State(), TcpState::kSynSent);
  h_.Advance(Duration::Seconds(200));
  EXPECT_EQ(State(), TcpState::kClosed);
  EXPECT_EQ(h_.stack().TakeError(conn_), EHOSTUNREACH);
}

TEST_F(IcmpErrorTest, ErrorsNeverResetAnEstablishedConnection) {
  Establish();
  ASSERT_EQ(State(), TcpState::kEstablished);
  h_.DeliverFrame(ErrorFor(wire::kIcmpDestUnreachable, wire::kIcmpPortUnreachable, syn_.seq + 1));
  EXPECT_EQ(State(), TcpState::kEstablished);
}

TEST_F(IcmpErrorTest, FragmentationNeededLowersTheMss) {
  Establish();
  std::vector<std::byte> data(3000, std::byte{1});
  ASSERT_TRUE(h_.stack().Send(conn_, data).ok());
  auto out = h_.Flush();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].payload.size(), 1460u);
  out = h_.DeliverFrame(
      ErrorFor(wire::kIcmpDestUnreachable, wire::kIcmpFragNeeded, syn_.seq + 1, 1000));
  EXPECT_EQ(h_.stack().Info(conn_).value().mss, 960);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].payload.size(), 960u) << "resent in smaller segments";
}

TEST(IpTest, DropsPacketsForOtherAddressesAndLand) {
  TcpHarness h;
  Seg s;
  s.flags = f::kSyn;
  auto other = TcpHarness::Build(s, kPeer, Ipv4Addr(198, 18, 0, 9));
  EXPECT_TRUE(h.DeliverFrame(other).empty());
  EXPECT_EQ(h.stack().counters().dropped(Drop::kNotForUs), 1u);
  auto land = TcpHarness::Build(s, kLocal, kLocal);
  EXPECT_TRUE(h.DeliverFrame(land).empty());
  EXPECT_EQ(h.stack().counters().dropped(Drop::kLand), 1u);
}

TEST(EthernetModeTest, AnswersArpAndResolvesBeforeSending) {
  StackConfig c = TcpHarness::DefaultConfig();
  c.link = LinkMode::kEthernet;
  c.mac = MacAddr{{0x02, 0, 0, 0, 0, 1}};
  Stack stack(c, std::pmr::new_delete_resource());
  const MacAddr peer_mac{{0x02, 0, 0, 0, 0, 2}};
  CollectSink sink;
  const Instant now = Instant::FromNanos(1'000'000'000);

  // Who has 198.18.0.1? The stack answers.
  std::vector<std::byte> req(60);
  wire::EmitEthernet(req, {MacAddr::Broadcast(), peer_mac, wire::kEtherTypeArp});
  wire::EmitArp(std::span(req).subspan(14),
                {wire::kArpRequest, peer_mac, kPeer, MacAddr{}, kLocal});
  stack.Receive(now, req, sink);
  ASSERT_EQ(sink.frames.size(), 1u);
  wire::EthernetHeader eth;
  wire::Bytes payload;
  ASSERT_EQ(wire::ParseEthernet(sink.frames[0], &eth, &payload), Drop::kNone);
  EXPECT_EQ(eth.dst, peer_mac);
  wire::ArpPacket reply;
  ASSERT_EQ(wire::ParseArp(payload, &reply), Drop::kNone);
  EXPECT_EQ(reply.op, wire::kArpReply);
  EXPECT_EQ(reply.sender_mac, c.mac);
  EXPECT_EQ(reply.sender_ip, kLocal);
  sink.frames.clear();

  // Connecting to an unknown neighbour: an ARP request first, the SYN once the reply comes.
  auto s = stack.Open();
  (void)stack.Connect(now, *s, Endpoint{Ipv4Addr(198, 18, 0, 3), 80});
  stack.Poll(now, sink);
  ASSERT_EQ(sink.frames.size(), 1u);
  ASSERT_EQ(wire::ParseEthernet(sink.frames[0], &eth, &payload), Drop::kNone);
  EXPECT_EQ(eth.ethertype, wire::kEtherTypeArp);
  EXPECT_TRUE(eth.dst.is_broadcast());
  sink.frames.clear();
  const MacAddr third{{0x02, 0, 0, 0, 0, 3}};
  std::vector<std::byte> rep(60);
  wire::EmitEthernet(rep, {c.mac, third, wire::kEtherTypeArp});
  wire::EmitArp(std::span(rep).subspan(14),
                {wire::kArpReply, third, Ipv4Addr(198, 18, 0, 3), c.mac, kLocal});
  stack.Receive(now, rep, sink);
  ASSERT_EQ(sink.frames.size(), 1u);
  ASSERT_EQ(wire::ParseEthernet(sink.frames[0], &eth, &payload), Drop::kNone);
  EXPECT_EQ(eth.dst, third);
  EXPECT_EQ(eth.ethertype, wire::kEtherTypeIpv4);
}

}  // namespace
}  // namespace shake::testing
