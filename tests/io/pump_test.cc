// io::Pump on a datagram socketpair standing in for a device: frames cross intact both ways,
// also when the handler's answers fill the transmit batch in the middle of a drain.
#include "io/pump.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <vector>

#include "io/offload.h"
#include "stack/wire/bytes.h"
#include "stack/wire/checksum.h"

namespace shake::io {
namespace {

// A "device" whose frames are whole datagrams of a socketpair end: no header, no decoding.
class PairDevice final : public Device {
 public:
  explicit PairDevice(int fd) : fd_(fd) {}
  int fd() const override { return fd_; }
  LinkMode link() const override { return LinkMode::kIp; }
  const std::string& name() const override { return name_; }
  uint16_t mtu() const override { return 1500; }
  bool is_socket() const override { return true; }
  size_t rx_buffer_size() const override { return 2048; }
  void Decode(std::span<std::byte> raw, FrameReceiver& out) override { out.OnFrame(raw, {}); }

 private:
  int fd_;
  std::string name_ = "pair";
};

std::vector<std::byte> Frame(int i) {
  std::vector<std::byte> f(100 + static_cast<size_t>(i) * 7);
  for (size_t k = 0; k < f.size(); ++k) f[k] = static_cast<std::byte>(i * 31 + static_cast<int>(k));
  return f;
}

// Records every frame and answers each with three frames of its own.
class Answering final : public PacketHandler {
 public:
  std::vector<std::vector<std::byte>> got;
  void Receive(Instant, std::span<const std::byte> frame, FrameSink& out, bool) override {
    got.emplace_back(frame.begin(), frame.end());
    for (int k = 0; k < 3; ++k) {
      std::span<std::byte> b = out.Acquire(64);
      ASSERT_GE(b.size(), 64u);
      for (size_t j = 0; j < 64; ++j) b[j] = static_cast<std::byte>(k);
      out.Commit(64);
    }
  }
  Instant Poll(Instant now, FrameSink&) override { return now; }
};

TEST(Pump, AnswersThatFillTheBatchMidDrainLeaveTheReceivedFramesIntact) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  int size = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  PairDevice dev(sv[0]);
  Pump pump(dev, /*rx_batch=*/32, /*tx_batch=*/4);  // 3 answers per frame: flushes mid-drain
  constexpr int kFrames = 40;
  for (int i = 0; i < kFrames; ++i) {
    const auto f = Frame(i);
    ASSERT_EQ(send(sv[1], f.data(), f.size(), 0), static_cast<ssize_t>(f.size()));
  }
  Answering h;
  EXPECT_EQ(pump.Drain(Instant::FromNanos(1), h, 64), kFrames);
  pump.Flush();
  ASSERT_EQ(h.got.size(), static_cast<size_t>(kFrames));
  for (int i = 0; i < kFrames; ++i) EXPECT_EQ(h.got[static_cast<size_t>(i)], Frame(i)) << i;
  int answers = 0;
  std::byte buf[2048];
  for (ssize_t n; (n = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
    EXPECT_EQ(n, 64);
    ++answers;
  }
  EXPECT_EQ(answers, 3 * kFrames);
  EXPECT_EQ(pump.Drain(Instant::FromNanos(2), h, 64), 0);  // empty: says so
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace shake::io

namespace shake::io {
namespace {

// An Ethernet+IPv4+TCP segment with a complete checksum, as the stack sends it.
std::vector<std::byte> Segment(uint32_t seq, size_t payload, uint8_t flags) {
  const size_t thl = 32;
  std::vector<std::byte> f(14 + 20 + thl + payload);
  std::span<std::byte> s(f);
  wire::Store16(s, 12, 0x0800);
  auto ip = s.subspan(14);
  wire::Store8(ip, 0, 0x45);
  wire::Store16(ip, 2, static_cast<uint16_t>(20 + thl + payload));
  wire::Store16(ip, 6, 0x4000);  // DF
  wire::Store8(ip, 8, 64);
  wire::Store8(ip, 9, 6);
  wire::Store32(ip, 12, Ipv4Addr(198, 18, 0, 2).value());
  wire::Store32(ip, 16, Ipv4Addr(198, 18, 0, 1).value());
  wire::Store16(ip, 10, wire::InternetChecksum(ip.first(20)));
  auto tcp = ip.subspan(20);
  wire::Store16(tcp, 0, 80);
  wire::Store16(tcp, 2, 40000);
  wire::Store32(tcp, 4, seq);
  wire::Store32(tcp, 8, 77);
  wire::Store8(tcp, 12, static_cast<uint8_t>(thl / 4 << 4));
  wire::Store8(tcp, 13, flags);
  wire::Store16(tcp, 14, 500);
  wire::Store8(tcp, 20, 1);  // options: nop nop timestamps
  wire::Store8(tcp, 21, 1);
  wire::Store8(tcp, 22, 8);
  wire::Store8(tcp, 23, 10);
  wire::Store32(tcp, 24, 123456);
  for (size_t i = 0; i < payload; ++i) tcp[thl + i] = std::byte((seq + i) * 13);
  wire::Checksum c;
  wire::AddPseudoHeader(c, Ipv4Addr(198, 18, 0, 2), Ipv4Addr(198, 18, 0, 1), 6,
                        static_cast<uint16_t>(thl + payload));
  c.Add(tcp);
  wire::Store16(tcp, 16, c.Finish());
  return f;
}

// A socketpair "device" with a virtio_net_hdr and GSO, as a veth behind PACKET_VNET_HDR.
class GsoPairDevice final : public Device {
 public:
  explicit GsoPairDevice(int fd) : fd_(fd) {}
  int fd() const override { return fd_; }
  LinkMode link() const override { return LinkMode::kEthernet; }
  const std::string& name() const override { return name_; }
  uint16_t mtu() const override { return 1500; }
  bool is_socket() const override { return true; }
  size_t header_len() const override { return VnetHeader::kSize; }
  size_t rx_buffer_size() const override { return 70000; }
  void Decode(std::span<std::byte> raw, FrameReceiver& out) override { out.OnFrame(raw, {}); }
  void EncodeHeader(std::span<std::byte> h) const override { VnetHeader{}.Emit(h); }
  bool supports_gso() const override { return true; }
  void EncodeGsoHeader(std::span<std::byte> h, size_t csum_start, size_t hdr_len,
                       uint16_t gso_size) const override {
    VnetHeader v;
    v.flags = VnetHeader::kNeedsCsum;
    v.gso_type = VnetHeader::kGsoTcpv4;
    v.hdr_len = static_cast<uint16_t>(hdr_len);
    v.gso_size = gso_size;
    v.csum_start = static_cast<uint16_t>(csum_start);
    v.csum_offset = 16;
    v.Emit(h);
  }

 private:
  int fd_;
  std::string name_ = "gso";
};

struct Frames final : FrameReceiver {
  std::vector<std::vector<std::byte>> got;
  void OnFrame(std::span<const std::byte> f, FrameMeta) override {
    got.emplace_back(f.begin(), f.end());
  }
};

// A GsoPairDevice on one end of a datagram socketpair; the test reads the other, `peer`.
struct GsoPair {
  static std::array<int, 2> Open() {
    std::array<int, 2> sv = {-1, -1};
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv.data()), 0);
    int size = 1 << 20;
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    return sv;
  }
  ~GsoPair() {
    close(sv[0]);
    close(sv[1]);
  }
  std::array<int, 2> sv = Open();
  GsoPairDevice dev{sv[0]};
  int peer() const { return sv[1]; }
};

void Put(FrameSink& sink, const std::vector<std::byte>& f) {
  std::span<std::byte> b = sink.Acquire(f.size());
  ASSERT_GE(b.size(), f.size());
  std::copy(f.begin(), f.end(), b.begin());
  sink.Commit(f.size());
}

// The TX order among libshake's processes lets batches of different flows leave side by side:
// a sealed batch names the flows of its frames, as hash buckets.
TEST(Pump, ASealedBatchNamesTheFlowBucketsOfItsFrames) {
  GsoPair pair;
  GsoPairDevice& dev = pair.dev;
  Pump pump(dev);
  auto seal = [&](const std::vector<std::vector<std::byte>>& frames) {
    for (const auto& f : frames) Put(pump.sink(Instant::FromNanos(1)), f);
    Pump::TxBatch* b = pump.Seal();
    const uint64_t flows = Pump::Flows(b);
    pump.Send(b);
    return flows;
  };
  EXPECT_EQ(Pump::Flows(nullptr), 0u);
  const uint64_t one = seal({Segment(1000, 100, 0x10), Segment(1100, 100, 0x18)});
  EXPECT_EQ(std::popcount(one), 1) << "two segments of one flow";
  EXPECT_EQ(seal({Segment(5000, 10, 0x10)}), one) << "the same flow, in a later batch";
  auto other = Segment(1000, 100, 0x10);
  wire::Store16(std::span(other).subspan(34), 2, 40001);  // another destination port
  const uint64_t two = seal({Segment(1000, 100, 0x10), other});
  EXPECT_EQ(std::popcount(two), 2) << "two flows";
  EXPECT_EQ(two & one, one);
  std::vector<std::byte> arp(42);
  wire::Store16(arp, 12, 0x0806);
  EXPECT_EQ(seal({arp}), 1u) << "a frame that is not IPv4 is bucket 0";
}

TEST(Pump, ABurstOfSegmentsLeavesAsOneSuperFrameThatCutsBackIntoThem) {
  GsoPair pair;
  GsoPairDevice& dev = pair.dev;
  Pump pump(dev);
  // Four full segments, a short one with PSH, then one that does not continue (a gap).
  std::vector<std::vector<std::byte>> sent;
  uint32_t seq = 1000;
  for (int i = 0; i < 4; ++i, seq += 1448) sent.push_back(Segment(seq, 1448, 0x10));
  sent.push_back(Segment(seq, 300, 0x18));
  seq += 300;
  const auto gap = Segment(seq + 5000, 1448, 0x10);
  for (const auto& f : sent) Put(pump.sink(Instant::FromNanos(1)), f);
  Put(pump.sink(Instant::FromNanos(1)), gap);
  pump.Flush();
  std::vector<std::vector<std::byte>> wire;
  std::byte buf[70000];
  for (ssize_t n; (n = recv(pair.peer(), buf, sizeof buf, MSG_DONTWAIT)) > 0;) wire.emplace_back(buf, buf + n);
  ASSERT_EQ(wire.size(), 2u);  // the super-frame, and the segment after the gap on its own
  EXPECT_EQ(pump.stats().tx_coalesced, 4u);
  const VnetHeader h = VnetHeader::Parse(wire[0]);
  EXPECT_EQ(h.gso_type, VnetHeader::kGsoTcpv4);
  EXPECT_EQ(h.gso_size, 1448);
  EXPECT_EQ(h.flags, VnetHeader::kNeedsCsum);
  EXPECT_EQ(h.csum_start, 34);
  EXPECT_EQ(VnetHeader::Parse(wire[1]).gso_type, VnetHeader::kGsoNone);
  {
    // The partial checksum is the pseudo-header's: completed over the whole super-frame, as a
    // device that does not cut it would, it checks.
    std::vector<std::byte> whole(wire[0].begin() + VnetHeader::kSize, wire[0].end());
    ASSERT_TRUE(CompletePartialChecksum(whole, h.csum_start, h.csum_offset));
    auto ip = std::span(whole).subspan(14);
    wire::Checksum c;
    wire::AddPseudoHeader(c, Ipv4Addr(wire::Load32(ip, 12)), Ipv4Addr(wire::Load32(ip, 16)), 6,
                          static_cast<uint16_t>(ip.size() - 20));
    c.Add(ip.subspan(20));
    EXPECT_EQ(c.Finish(), 0);
    EXPECT_EQ(wire::Load16(ip, 2), ip.size());
    EXPECT_EQ(wire::InternetChecksum(ip.first(20)), 0);
  }
  // Cut as the kernel would: the very segments that were put in.
  std::vector<std::byte> scratch;
  Frames cut;
  ASSERT_TRUE(SegmentTcp(std::span(wire[0]).subspan(VnetHeader::kSize), 14, h.gso_size, scratch,
                         cut));
  ASSERT_EQ(cut.got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    // The IP id of a cut segment is the first one's plus its index; the rest is identical.
    auto a = sent[i], b = cut.got[i];
    wire::Store16(a, 14 + 4, 0);
    wire::Store16(a, 14 + 10, 0);
    wire::Store16(b, 14 + 4, 0);
    wire::Store16(b, 14 + 10, 0);
    EXPECT_EQ(a, b) << "segment " << i;
  }
  EXPECT_EQ(std::vector<std::byte>(wire[1].begin() + VnetHeader::kSize, wire[1].end()), gap);
}

}  // namespace
}  // namespace shake::io
