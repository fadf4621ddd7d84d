// TCP header and option parsing and emission (RFC 9293 section 3.1, RFC 7323, RFC 2018).
//
// Options are written in the order and with the NOP padding of Linux's tcp_options_write()
// (net/ipv4/tcp_output.c), one 32-bit-aligned group per option:
//   MSS                      kind 2, len 4, mss
//   SACK-permitted + TS      kind 4, len 2, kind 8, len 10, val, ecr     (when both are present)
//   TS                       NOP, NOP, kind 8, len 10, val, ecr
//   SACK-permitted           NOP, NOP, kind 4, len 2
//   window scale             NOP, kind 3, len 3, shift
//   SACK blocks              NOP, NOP, kind 5, len 2+8n, n blocks of (left, right)
// so a SYN reads "mss, sackOK, TS, nop, wscale" like the kernel's.
#include "stack/wire/tcp.h"

#include "stack/wire/checksum.h"
#include "stack/wire/ipv4.h"

namespace shake::wire {
namespace {

constexpr size_t kSrcPortOff = 0;
constexpr size_t kDstPortOff = 2;
constexpr size_t kSeqOff = 4;
constexpr size_t kAckOff = 8;
constexpr size_t kDataOffsetOff = 12;  // high nibble, in 32-bit words
constexpr size_t kFlagsOff = 13;
constexpr size_t kWindowOff = 14;
constexpr size_t kChecksumOff = 16;
constexpr size_t kUrgentOff = 18;

constexpr uint8_t kOptEol = 0;
constexpr uint8_t kOptNop = 1;
constexpr uint8_t kOptMss = 2;
constexpr uint8_t kOptWindowScale = 3;
constexpr uint8_t kOptSackPermitted = 4;
constexpr uint8_t kOptSack = 5;
constexpr uint8_t kOptTimestamp = 8;

constexpr uint8_t kOptLenMss = 4;
constexpr uint8_t kOptLenWindowScale = 3;
constexpr uint8_t kOptLenSackPermitted = 2;
constexpr uint8_t kOptLenTimestamp = 10;
constexpr uint8_t kOptLenSackBase = 2;
constexpr uint8_t kOptLenSackBlock = 8;
constexpr size_t kMaxSackBlocks = 4;

// Bytes of each aligned group, as laid out above.
constexpr size_t kGroupMss = 4;
constexpr size_t kGroupTimestamp = 12;  // SACKOK+TS or NOP,NOP,TS
constexpr size_t kGroupSackPermitted = 4;
constexpr size_t kGroupWindowScale = 4;
constexpr size_t kGroupSackHeader = 4;  // NOP, NOP, kind, len

// Length of everything except SACK blocks.
size_t FixedOptionsLen(const TcpOptions& o) {
  size_t len = 0;
  if (o.mss) len += kGroupMss;
  if (o.timestamp) len += kGroupTimestamp;  // absorbs SACK-permitted when both are present
  if (o.sack_permitted && !o.timestamp) len += kGroupSackPermitted;
  if (o.window_scale) len += kGroupWindowScale;
  return len;
}

// How many of the SACK blocks fit in the 40 bytes after the other options; like Linux, the
// blocks that do not fit are left out (with timestamps, at most three).
size_t SackBlocksThatFit(const TcpOptions& o, size_t fixed_len) {
  const size_t wanted = o.sack_count < kMaxSackBlocks ? o.sack_count : kMaxSackBlocks;
  if (wanted == 0 || fixed_len + kGroupSackHeader + kOptLenSackBlock > kTcpMaxOptionsLen) return 0;
  const size_t room = (kTcpMaxOptionsLen - fixed_len - kGroupSackHeader) / kOptLenSackBlock;
  return wanted < room ? wanted : room;
}

size_t OptionsLen(const TcpOptions& o) {
  const size_t fixed = FixedOptionsLen(o);
  const size_t blocks = SackBlocksThatFit(o, fixed);
  return fixed + (blocks == 0 ? 0 : kGroupSackHeader + blocks * kOptLenSackBlock);
}

// Records one option of known length in `o`. An option of a known kind but with the wrong
// length is ignored, as Linux's tcp_parse_options() does, rather than dropping the segment.
void RecordOption(Bytes opt, TcpOptions* o) {
  const uint8_t kind = Load8(opt, 0);
  const size_t len = opt.size();
  switch (kind) {
    case kOptMss:
      if (len == kOptLenMss) o->mss = Load16(opt, 2);
      break;
    case kOptWindowScale:
      if (len == kOptLenWindowScale) o->window_scale = Load8(opt, 2);
      break;
    case kOptSackPermitted:
      if (len == kOptLenSackPermitted) o->sack_permitted = true;
      break;
    case kOptTimestamp:
      if (len == kOptLenTimestamp) o->timestamp = TcpTimestamp{Load32(opt, 2), Load32(opt, 6)};
      break;
    case kOptSack: {
      const size_t body = len - kOptLenSackBase;
      const size_t n = body / kOptLenSackBlock;
      if (body % kOptLenSackBlock != 0 || n == 0 || n > kMaxSackBlocks) break;
      o->sack = {};
      for (size_t i = 0; i < n; ++i) {
        const size_t off = kOptLenSackBase + i * kOptLenSackBlock;
        o->sack[i] = SackBlock{SeqNum(Load32(opt, off)), SeqNum(Load32(opt, off + 4))};
      }
      o->sack_count = static_cast<uint8_t>(n);
      break;
    }
    default:
      break;  // unknown kinds are skipped by their length
  }
}

Drop ParseOptions(Bytes area, TcpOptions* o) {
  size_t i = 0;
  while (i < area.size()) {
    const uint8_t kind = Load8(area, i);
    if (kind == kOptEol) break;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    // Every other option has a length byte that counts the kind and itself.
    if (i + 1 >= area.size()) return Drop::kBadTcpOption;
    const size_t len = Load8(area, i + 1);
    if (len < 2 || len > area.size() - i) return Drop::kBadTcpOption;
    RecordOption(area.subspan(i, len), o);
    i += len;
  }
  return Drop::kNone;
}

}  // namespace

Drop ParseTcp(Bytes segment, Ipv4Addr src, Ipv4Addr dst, TcpHeader* out, Bytes* payload,
              bool verify_checksum) {
  if (segment.size() < kTcpMinHeaderLen) return Drop::kTruncated;
  const size_t header_len = static_cast<size_t>(Load8(segment, kDataOffsetOff) >> 4) * 4;
  if (header_len < kTcpMinHeaderLen || header_len > segment.size()) return Drop::kBadTcpHeaderLen;
  if (verify_checksum) {
    // The pseudo-header's length is 16 bits; ParseIpv4 never yields a longer payload.
    if (segment.size() > 0xffff) return Drop::kBadTcpChecksum;
    Checksum c;
    AddPseudoHeader(c, src, dst, kProtoTcp, static_cast<uint16_t>(segment.size()));
    c.Add(segment);
    if (c.Finish() != 0) return Drop::kBadTcpChecksum;
  }

  TcpOptions options;
  if (const Drop d =
          ParseOptions(segment.subspan(kTcpMinHeaderLen, header_len - kTcpMinHeaderLen), &options);
      d != Drop::kNone) {
    return d;
  }

  out->src_port = Load16(segment, kSrcPortOff);
  out->dst_port = Load16(segment, kDstPortOff);
  out->seq = SeqNum(Load32(segment, kSeqOff));
  out->ack = SeqNum(Load32(segment, kAckOff));
  out->flags = Load8(segment, kFlagsOff);
  out->window = Load16(segment, kWindowOff);
  out->urgent = Load16(segment, kUrgentOff);
  out->options = options;
  *payload = segment.subspan(header_len);
  return Drop::kNone;
}

size_t TcpHeaderLen(const TcpOptions& options) { return kTcpMinHeaderLen + OptionsLen(options); }

size_t EmitTcpHeader(MutBytes out, const TcpHeader& h) {
  const TcpOptions& o = h.options;
  const size_t header_len = TcpHeaderLen(o);

  Store16(out, kSrcPortOff, h.src_port);
  Store16(out, kDstPortOff, h.dst_port);
  Store32(out, kSeqOff, h.seq.raw());
  Store32(out, kAckOff, h.ack.raw());
  Store8(out, kDataOffsetOff, static_cast<uint8_t>((header_len / 4) << 4));
  Store8(out, kFlagsOff, h.flags);
  Store16(out, kWindowOff, h.window);
  Store16(out, kChecksumOff, 0);
  Store16(out, kUrgentOff, h.urgent);

  size_t p = kTcpMinHeaderLen;
  auto put8 = [&](uint8_t v) { Store8(out, p++, v); };
  auto put32 = [&](uint32_t v) {
    Store32(out, p, v);
    p += 4;
  };

  if (o.mss) {
    put8(kOptMss);
    put8(kOptLenMss);
    Store16(out, p, *o.mss);
    p += 2;
  }
  if (o.timestamp) {
    if (o.sack_permitted) {
      put8(kOptSackPermitted);
      put8(kOptLenSackPermitted);
    } else {
      put8(kOptNop);
      put8(kOptNop);
    }
    put8(kOptTimestamp);
    put8(kOptLenTimestamp);
    put32(o.timestamp->val);
    put32(o.timestamp->ecr);
  } else if (o.sack_permitted) {
    put8(kOptNop);
    put8(kOptNop);
    put8(kOptSackPermitted);
    put8(kOptLenSackPermitted);
  }
  if (o.window_scale) {
    put8(kOptNop);
    put8(kOptWindowScale);
    put8(kOptLenWindowScale);
    put8(*o.window_scale);
  }
  const size_t blocks = SackBlocksThatFit(o, FixedOptionsLen(o));
  if (blocks > 0) {
    put8(kOptNop);
    put8(kOptNop);
    put8(kOptSack);
    put8(static_cast<uint8_t>(kOptLenSackBase + blocks * kOptLenSackBlock));
    for (size_t i = 0; i < blocks; ++i) {
      put32(o.sack[i].left.raw());
      put32(o.sack[i].right.raw());
    }
  }
  return header_len;
}

void FillTcpChecksum(MutBytes segment, Ipv4Addr src, Ipv4Addr dst) {
  if (segment.size() < kTcpMinHeaderLen) return;  // not a segment the stack built
  Store16(segment, kChecksumOff, 0);
  Checksum c;
  AddPseudoHeader(c, src, dst, kProtoTcp, static_cast<uint16_t>(segment.size()));
  c.Add(segment);
  Store16(segment, kChecksumOff, c.Finish());
}

}  // namespace shake::wire
