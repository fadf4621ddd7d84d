#include "io/offload.h"

#include <cstring>

#include "stack/wire/bytes.h"
#include "stack/wire/checksum.h"

namespace shake::io {
namespace {

using wire::Load16;
using wire::Load32;
using wire::Load8;
using wire::Store16;
using wire::Store32;

uint16_t LoadLe16(std::span<const std::byte> b, size_t off) {
  return static_cast<uint16_t>(static_cast<unsigned>(b[off]) |
                               (static_cast<unsigned>(b[off + 1]) << 8));
}
void StoreLe16(std::span<std::byte> b, size_t off, uint16_t v) {
  b[off] = std::byte(v & 0xff);
  b[off + 1] = std::byte(v >> 8);
}

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;

}  // namespace

VnetHeader VnetHeader::Parse(std::span<const std::byte> b) {
  VnetHeader h;
  h.flags = Load8(b, 0);
  h.gso_type = Load8(b, 1);
  h.hdr_len = LoadLe16(b, 2);
  h.gso_size = LoadLe16(b, 4);
  h.csum_start = LoadLe16(b, 6);
  h.csum_offset = LoadLe16(b, 8);
  return h;
}

void VnetHeader::Emit(std::span<std::byte> b) const {
  b[0] = std::byte{flags};
  b[1] = std::byte{gso_type};
  StoreLe16(b, 2, hdr_len);
  StoreLe16(b, 4, gso_size);
  StoreLe16(b, 6, csum_start);
  StoreLe16(b, 8, csum_offset);
}

VnetHeader VnetHeader::TcpGso(size_t csum_start, size_t hdr_len, uint16_t gso_size) {
  VnetHeader h;
  h.flags = kNeedsCsum;
  h.gso_type = kGsoTcpv4;
  h.hdr_len = static_cast<uint16_t>(hdr_len);
  h.gso_size = gso_size;
  h.csum_start = static_cast<uint16_t>(csum_start);
  h.csum_offset = 16;  // the TCP checksum field
  return h;
}

bool FixWholeSuperFrame(std::span<std::byte> frame, size_t l2_len) {
  if (frame.size() < l2_len + 20 || frame.size() - l2_len > 65535) return false;
  const std::span<std::byte> ip = frame.subspan(l2_len);
  const size_t ihl = size_t{Load8(ip, 0) & 0x0fu} * 4;
  if ((Load8(ip, 0) >> 4) != 4 || ihl < 20 || ihl > ip.size()) return false;
  Store16(ip, 2, static_cast<uint16_t>(ip.size()));
  Store16(ip, 10, 0);
  Store16(ip, 10, wire::InternetChecksum(ip.first(ihl)));
  return true;
}

bool CompletePartialChecksum(std::span<std::byte> frame, size_t start, size_t offset) {
  if (start > frame.size() || offset + 2 > frame.size() - start) return false;
  wire::Checksum c;
  c.Add(frame.subspan(start));
  Store16(frame, start + offset, c.Finish());
  return true;
}

bool SegmentTcp(std::span<const std::byte> frame, size_t l2_len, uint16_t mss,
                std::vector<std::byte>& scratch, FrameReceiver& out) {
  if (mss == 0 || frame.size() < l2_len + 20) return false;
  if (l2_len == 14 && Load16(frame, 12) != 0x0800) return false;
  const auto ip = frame.subspan(l2_len);
  if ((Load8(ip, 0) >> 4) != 4) return false;
  const size_t ihl = size_t{Load8(ip, 0) & 0x0fu} * 4;
  if (ihl < 20 || Load8(ip, 9) != 6) return false;
  const size_t ip_total = Load16(ip, 2);
  // A GSO frame's total length may be 0 or stale; the frame size is authoritative.
  const size_t ip_len = ip.size();
  (void)ip_total;
  if (ip_len < ihl + 20) return false;
  const auto tcp = ip.subspan(ihl);
  const size_t thl = size_t{Load8(tcp, 12)} / 16 * 4;
  if (thl < 20 || thl > tcp.size()) return false;
  const size_t hdrs = l2_len + ihl + thl;
  const auto payload = frame.subspan(hdrs);
  const uint32_t seq0 = Load32(tcp, 4);
  const uint16_t id0 = Load16(ip, 4);
  const uint8_t flags0 = Load8(tcp, 13);
  const Ipv4Addr src(Load32(ip, 12)), dst(Load32(ip, 16));

  scratch.resize(hdrs + mss);
  const std::span<std::byte> seg(scratch);
  size_t off = 0;
  size_t index = 0;
  do {
    const size_t n = std::min<size_t>(mss, payload.size() - off);
    const bool first = off == 0;
    const bool last = off + n == payload.size();
    std::memcpy(seg.data(), frame.data(), hdrs);
    if (n) std::memcpy(seg.data() + hdrs, payload.data() + off, n);
    auto sip = seg.subspan(l2_len, ihl + thl + n);
    Store16(sip, 2, static_cast<uint16_t>(ihl + thl + n));
    Store16(sip, 4, static_cast<uint16_t>(id0 + index));
    Store16(sip, 10, 0);
    Store16(sip, 10, wire::InternetChecksum(sip.first(ihl)));
    auto stcp = sip.subspan(ihl);
    Store32(stcp, 4, seq0 + static_cast<uint32_t>(off));
    uint8_t f = flags0;
    if (!last) f = static_cast<uint8_t>(f & ~(kTcpFin | kTcpPsh));
    if (!first) f = static_cast<uint8_t>(f & ~kTcpCwr);
    wire::Store8(stcp, 13, f);
    Store16(stcp, 16, 0);
    wire::Checksum c;
    wire::AddPseudoHeader(c, src, dst, 6, static_cast<uint16_t>(thl + n));
    c.Add(stcp);
    Store16(stcp, 16, c.Finish());
    out.OnFrame(seg.first(hdrs + n), FrameMeta{.checksum_trusted = true});
    off += n;
    ++index;
  } while (off < payload.size());
  return true;
}

bool ParseTcpSegment(std::span<const std::byte> frame, size_t l2_len, TcpSegmentView* out) {
  if (frame.size() < l2_len + 40) return false;
  if (l2_len == 14 && Load16(frame, 12) != 0x0800) return false;
  const auto ip = frame.subspan(l2_len);
  if ((Load8(ip, 0) >> 4) != 4 || Load8(ip, 9) != 6) return false;
  const size_t ihl = size_t{Load8(ip, 0) & 0x0fu} * 4;
  if (ihl < 20 || (Load16(ip, 6) & 0x3fff) != 0) return false;  // no fragment
  if (Load16(ip, 2) != ip.size() || ip.size() < ihl + 20) return false;
  const auto tcp = ip.subspan(ihl);
  const size_t thl = size_t{Load8(tcp, 12)} / 16 * 4;
  if (thl < 20 || thl > tcp.size()) return false;
  out->ihl = ihl;
  out->thl = thl;
  out->payload = tcp.size() - thl;
  out->seq = Load32(tcp, 4);
  out->flags = Load8(tcp, 13);
  return true;
}

bool Continues(std::span<const std::byte> first, const TcpSegmentView& f, uint32_t first_bytes,
               std::span<const std::byte> next, const TcpSegmentView& n, size_t l2_len) {
  constexpr uint8_t kSyn = 0x02, kRst = 0x04, kUrg = 0x20;
  if (f.ihl != n.ihl || f.thl != n.thl || f.payload == 0 || n.payload == 0) return false;
  if (f.flags & (kTcpFin | kSyn | kRst | kUrg)) return false;
  if (n.flags & (kSyn | kRst | kUrg)) return false;
  if (static_cast<uint8_t>(f.flags & ~kTcpPsh) != static_cast<uint8_t>(n.flags & ~(kTcpPsh | kTcpFin))) {
    return false;
  }
  if (n.seq != f.seq + first_bytes) return false;
  auto same = [&](size_t from, size_t to) {
    return std::memcmp(first.data() + from, next.data() + from, to - from) == 0;
  };
  const size_t ip = l2_len, tcp = l2_len + f.ihl;
  return same(0, ip + 2) &&                  // link header, IP version/IHL/TOS
         same(ip + 6, ip + 10) &&            // fragment field, TTL, protocol
         same(ip + 12, ip + f.ihl) &&        // addresses, IP options
         same(tcp, tcp + 4) &&               // ports
         same(tcp + 8, tcp + 13) &&          // ack, data offset
         same(tcp + 14, tcp + 16) &&         // window
         same(tcp + 18, tcp + f.thl);        // urgent pointer, options (timestamps included)
}

void FinishSuperFrame(std::span<std::byte> frame, size_t l2_len, const TcpSegmentView& f) {
  const auto ip = frame.subspan(l2_len);
  Store16(ip, 2, static_cast<uint16_t>(ip.size()));
  Store16(ip, 10, 0);
  Store16(ip, 10, wire::InternetChecksum(ip.first(f.ihl)));
  const auto tcp = ip.subspan(f.ihl);
  wire::Checksum c;
  wire::AddPseudoHeader(c, Ipv4Addr(Load32(ip, 12)), Ipv4Addr(Load32(ip, 16)), 6,
                        static_cast<uint16_t>(tcp.size()));
  // The partial sum, not complemented: the device adds the segment and complements (as the
  // kernel's own CHECKSUM_PARTIAL frames carry it).
  Store16(tcp, 16, static_cast<uint16_t>(~c.Finish()));
}

}  // namespace shake::io
