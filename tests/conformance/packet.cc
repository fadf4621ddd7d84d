#include "tests/conformance/packet.h"

#include <cstddef>

namespace conformance {
namespace {

void Put16(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  Put16(b, at, v >> 16);
  Put16(b, at + 2, v & 0xffff);
}
uint32_t Get16(const std::vector<uint8_t>& b, size_t at) {
  return (uint32_t{b[at]} << 8) | b[at + 1];
}
uint32_t Get32(const std::vector<uint8_t>& b, size_t at) {
  return (Get16(b, at) << 16) | Get16(b, at + 2);
}

uint32_t SumWords(const std::vector<uint8_t>& b, size_t from, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += Get16(b, from + i);
  if (len % 2 != 0) sum += uint32_t{b[from + len - 1]} << 8;
  return sum;
}
uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

void EncodeOptions(const std::vector<TcpOption>& opts, std::vector<uint8_t>& out) {
  for (const TcpOption& o : opts) {
    switch (o.kind) {
      case TcpOption::Kind::kEol: out.push_back(0); break;
      case TcpOption::Kind::kNop: out.push_back(1); break;
      case TcpOption::Kind::kMss:
        out.insert(out.end(), {2, 4, static_cast<uint8_t>(o.a >> 8), static_cast<uint8_t>(o.a)});
        break;
      case TcpOption::Kind::kWscale:
        out.insert(out.end(), {3, 3, static_cast<uint8_t>(o.a)});
        break;
      case TcpOption::Kind::kSackOk: out.insert(out.end(), {4, 2}); break;
      case TcpOption::Kind::kSack: {
        out.push_back(5);
        out.push_back(static_cast<uint8_t>(2 + 8 * o.blocks.size()));
        for (const SackBlock& s : o.blocks) {
          for (uint32_t v : {s.left, s.right}) {
            for (int sh = 24; sh >= 0; sh -= 8) out.push_back(static_cast<uint8_t>(v >> sh));
          }
        }
        break;
      }
      case TcpOption::Kind::kTimestamp:
        out.insert(out.end(), {8, 10});
        for (uint32_t v : {o.a, o.b}) {
          for (int sh = 24; sh >= 0; sh -= 8) out.push_back(static_cast<uint8_t>(v >> sh));
        }
        break;
      case TcpOption::Kind::kOther:
        out.insert(out.end(), {static_cast<uint8_t>(o.a), static_cast<uint8_t>(2 + o.data.size())});
        out.insert(out.end(), o.data.begin(), o.data.end());
        break;
    }
  }
  while (out.size() % 4 != 0) out.push_back(0);  // EOL padding
}

}  // namespace

std::vector<uint8_t> Encode(const TcpPacket& p) {
  std::vector<uint8_t> opts;
  EncodeOptions(p.options, opts);
  const size_t tcp_len = 20 + opts.size() + p.payload_len;
  const size_t total = 20 + tcp_len;
  std::vector<uint8_t> b(total, 0);
  b[0] = 0x45;
  b[1] = p.tos;
  Put16(b, 2, static_cast<uint32_t>(total));
  Put16(b, 6, 0x4000);  // DF
  b[8] = 64;
  b[9] = 6;
  Put32(b, 12, p.src_addr);
  Put32(b, 16, p.dst_addr);
  Put16(b, 10, Fold(SumWords(b, 0, 20, 0)));
  const size_t t = 20;
  Put16(b, t + 0, p.src_port);
  Put16(b, t + 2, p.dst_port);
  Put32(b, t + 4, p.seq);
  Put32(b, t + 8, p.ack);
  b[t + 12] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
  b[t + 13] = p.flags;
  Put16(b, t + 14, p.window);
  Put16(b, t + 18, p.urgent);
  for (size_t i = 0; i < opts.size(); ++i) b[t + 20 + i] = opts[i];
  uint32_t sum = (p.src_addr >> 16) + (p.src_addr & 0xffff) + (p.dst_addr >> 16) +
                 (p.dst_addr & 0xffff) + 6 + static_cast<uint32_t>(tcp_len);
  Put16(b, t + 16, Fold(SumWords(b, t, tcp_len, sum)));
  return b;
}

std::optional<TcpPacket> Decode(const std::vector<uint8_t>& b, std::string* why) {
  auto fail = [&](const char* what) -> std::optional<TcpPacket> {
    if (why != nullptr) *why = what;
    return std::nullopt;
  };
  if (b.size() < 20) return fail("runt packet");
  if ((b[0] >> 4) != 4) return fail((b[0] >> 4) == 6 ? "IPv6 packet" : "not IPv4");
  const size_t ihl = size_t{b[0] & 0xfu} * 4;
  const size_t total = Get16(b, 2);
  if (ihl < 20 || total < ihl || total > b.size()) return fail("bad IPv4 lengths");
  if (b[9] != 6) return fail(b[9] == 1 ? "ICMP packet" : "not TCP");
  if ((Get16(b, 6) & 0x3fff) != 0) return fail("IPv4 fragment");
  if (total - ihl < 20) return fail("truncated TCP header");
  TcpPacket p;
  p.tos = b[1];
  p.src_addr = Get32(b, 12);
  p.dst_addr = Get32(b, 16);
  const size_t t = ihl;
  p.src_port = static_cast<uint16_t>(Get16(b, t));
  p.dst_port = static_cast<uint16_t>(Get16(b, t + 2));
  p.seq = Get32(b, t + 4);
  p.ack = Get32(b, t + 8);
  const size_t doff = size_t{static_cast<uint8_t>(b[t + 12] >> 4)} * 4;
  p.flags = b[t + 13];
  p.window = static_cast<uint16_t>(Get16(b, t + 14));
  p.urgent = static_cast<uint16_t>(Get16(b, t + 18));
  if (doff < 20 || t + doff > total) return fail("bad TCP data offset");
  p.payload_len = static_cast<uint32_t>(total - t - doff);
  size_t i = t + 20;
  const size_t end = t + doff;
  while (i < end) {
    const uint8_t kind = b[i];
    TcpOption o;
    if (kind == 0) {
      // EOL: the rest is padding. Record it only when it is not mere padding at the end.
      o.kind = TcpOption::Kind::kEol;
      bool all_zero = true;
      for (size_t j = i; j < end; ++j) all_zero = all_zero && b[j] == 0;
      if (!all_zero) p.options.push_back(o);
      break;
    }
    if (kind == 1) {
      o.kind = TcpOption::Kind::kNop;
      p.options.push_back(o);
      ++i;
      continue;
    }
    if (i + 1 >= end) return fail("truncated TCP option");
    const size_t len = b[i + 1];
    if (len < 2 || i + len > end) return fail("bad TCP option length");
    if (kind == 2 && len == 4) {
      o.kind = TcpOption::Kind::kMss;
      o.a = Get16(b, i + 2);
    } else if (kind == 3 && len == 3) {
      o.kind = TcpOption::Kind::kWscale;
      o.a = b[i + 2];
    } else if (kind == 4 && len == 2) {
      o.kind = TcpOption::Kind::kSackOk;
    } else if (kind == 5 && (len - 2) % 8 == 0) {
      o.kind = TcpOption::Kind::kSack;
      for (size_t j = i + 2; j < i + len; j += 8) o.blocks.push_back({Get32(b, j), Get32(b, j + 4)});
    } else if (kind == 8 && len == 10) {
      o.kind = TcpOption::Kind::kTimestamp;
      o.a = Get32(b, i + 2);
      o.b = Get32(b, i + 6);
    } else {
      o.kind = TcpOption::Kind::kOther;
      o.a = kind;
      o.data.assign(b.begin() + static_cast<std::ptrdiff_t>(i + 2),
                    b.begin() + static_cast<std::ptrdiff_t>(i + len));
    }
    p.options.push_back(o);
    i += len;
  }
  return p;
}

std::string FlagsString(uint8_t flags) {
  std::string s;
  if (flags & tcpflag::kSyn) s += 'S';
  if (flags & tcpflag::kFin) s += 'F';
  if (flags & tcpflag::kRst) s += 'R';
  if (flags & tcpflag::kPsh) s += 'P';
  if (flags & tcpflag::kUrg) s += 'U';
  if (flags & tcpflag::kEce) s += 'E';
  if (flags & tcpflag::kCwr) s += 'W';
  if (flags & tcpflag::kAck) s += '.';
  return s;
}

std::string AddrString(uint32_t a) {
  return std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 0xff) + "." +
         std::to_string((a >> 8) & 0xff) + "." + std::to_string(a & 0xff);
}

}  // namespace conformance
