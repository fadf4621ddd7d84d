// Software offloads: partial checksum completion and TCP/IPv4 GSO segmentation.
#include "io/offload.h"

#include <gtest/gtest.h>

#include <vector>

#include "stack/wire/bytes.h"
#include "stack/wire/checksum.h"

namespace shake::io {
namespace {

using wire::Load16;
using wire::Load32;

constexpr Ipv4Addr kSrc(198, 18, 0, 1), kDst(198, 18, 0, 2);

// Ethernet + IPv4 + TCP (20-byte header + 12 bytes of timestamp option) + payload, with the TCP
// checksum field holding only the pseudo-header sum, as a veth leaves it (CHECKSUM_PARTIAL).
std::vector<std::byte> PartialFrame(size_t payload, uint8_t flags) {
  const size_t thl = 32;
  std::vector<std::byte> f(14 + 20 + thl + payload);
  std::span<std::byte> s(f);
  wire::Store16(s, 12, 0x0800);
  auto ip = s.subspan(14);
  wire::Store8(ip, 0, 0x45);
  wire::Store16(ip, 2, static_cast<uint16_t>(20 + thl + payload));
  wire::Store16(ip, 4, 1000);
  wire::Store8(ip, 8, 64);
  wire::Store8(ip, 9, 6);
  wire::Store32(ip, 12, kSrc.value());
  wire::Store32(ip, 16, kDst.value());
  auto tcp = ip.subspan(20);
  wire::Store16(tcp, 0, 80);
  wire::Store16(tcp, 2, 40000);
  wire::Store32(tcp, 4, 0xfffff000);  // wraps during the split
  wire::Store32(tcp, 8, 1);
  wire::Store8(tcp, 12, static_cast<uint8_t>(thl / 4 << 4));
  wire::Store8(tcp, 13, flags);
  for (size_t i = 0; i < payload; ++i) tcp[thl + i] = std::byte(i * 7);
  wire::Checksum c;
  wire::AddPseudoHeader(c, kSrc, kDst, 6, static_cast<uint16_t>(thl + payload));
  wire::Store16(tcp, 16, static_cast<uint16_t>(~c.Finish()));
  return f;
}

bool TcpChecksumOk(std::span<const std::byte> frame) {
  auto ip = frame.subspan(14);
  const size_t len = Load16(ip, 2);
  wire::Checksum c;
  wire::AddPseudoHeader(c, Ipv4Addr(Load32(ip, 12)), Ipv4Addr(Load32(ip, 16)), 6,
                        static_cast<uint16_t>(len - 20));
  c.Add(ip.subspan(20, len - 20));
  return c.Finish() == 0;
}

struct Collect final : FrameReceiver {
  std::vector<std::vector<std::byte>> frames;
  void OnFrame(std::span<const std::byte> f, FrameMeta m) override {
    EXPECT_TRUE(m.checksum_trusted);
    frames.emplace_back(f.begin(), f.end());
  }
};

TEST(Offload, CompletesPartialChecksum) {
  auto f = PartialFrame(333, 0x18);
  EXPECT_FALSE(TcpChecksumOk(f));
  ASSERT_TRUE(CompletePartialChecksum(f, 34, 16));
  EXPECT_TRUE(TcpChecksumOk(f));
  EXPECT_FALSE(CompletePartialChecksum(f, f.size() - 1, 16));
}

TEST(Offload, SplitsSuperFrameIntoValidSegments) {
  const size_t payload = 10000, mss = 1448;
  const auto f = PartialFrame(payload, 0x19 | 0x80);  // FIN PSH ACK CWR
  std::vector<std::byte> scratch;
  Collect out;
  ASSERT_TRUE(SegmentTcp(f, 14, mss, scratch, out));
  ASSERT_EQ(out.frames.size(), (payload + mss - 1) / mss);
  size_t offset = 0;
  for (size_t i = 0; i < out.frames.size(); ++i) {
    std::span<const std::byte> s(out.frames[i]);
    auto ip = s.subspan(14);
    auto tcp = ip.subspan(20);
    const size_t n = Load16(ip, 2) - 20 - 32;
    EXPECT_EQ(s.size(), 14 + 20 + 32 + n);
    EXPECT_EQ(n, std::min(mss, payload - offset));
    EXPECT_EQ(wire::InternetChecksum(ip.first(20)), 0) << "IP checksum, segment " << i;
    EXPECT_TRUE(TcpChecksumOk(s)) << "segment " << i;
    EXPECT_EQ(Load16(ip, 4), 1000 + i);
    EXPECT_EQ(Load32(tcp, 4), static_cast<uint32_t>(0xfffff000u + offset));
    const uint8_t flags = wire::Load8(tcp, 13);
    const bool last = i + 1 == out.frames.size();
    EXPECT_EQ((flags & 0x01) != 0, last) << "FIN only on the last";
    EXPECT_EQ((flags & 0x08) != 0, last) << "PSH only on the last";
    EXPECT_EQ((flags & 0x80) != 0, i == 0) << "CWR only on the first";
    EXPECT_EQ(Load32(tcp, 20), Load32(std::span<const std::byte>(f), 14 + 20 + 20));  // options
    for (size_t k = 0; k < n; ++k) ASSERT_EQ(tcp[32 + k], std::byte((offset + k) * 7));
    offset += n;
  }
  EXPECT_EQ(offset, payload);
}

TEST(Offload, RefusesNonTcp) {
  auto f = PartialFrame(100, 0x10);
  wire::Store8(std::span<std::byte>(f), 14 + 9, 17);  // UDP
  std::vector<std::byte> scratch;
  Collect out;
  EXPECT_FALSE(SegmentTcp(f, 14, 1448, scratch, out));
  EXPECT_TRUE(out.frames.empty());
}

TEST(Offload, VnetHeaderRoundTrips) {
  VnetHeader h{.flags = 1, .gso_type = 1, .hdr_len = 66, .gso_size = 1448, .csum_start = 34,
               .csum_offset = 16};
  std::byte b[VnetHeader::kSize];
  h.Emit(b);
  const auto g = VnetHeader::Parse(b);
  EXPECT_EQ(g.gso_size, 1448);
  EXPECT_EQ(g.csum_start, 34);
  EXPECT_EQ(g.csum_offset, 16);
  EXPECT_EQ(g.hdr_len, 66);
  EXPECT_EQ(static_cast<int>(b[4]), 1448 & 0xff);  // little-endian
}

}  // namespace
}  // namespace shake::io
