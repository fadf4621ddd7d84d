// IPv4 header parsing and emission (RFC 791 section 3.1).
#include "stack/wire/ipv4.h"

#include "stack/wire/checksum.h"

namespace shake::wire {
namespace {

constexpr size_t kVersionIhlOff = 0;
constexpr size_t kTosOff = 1;
constexpr size_t kTotalLenOff = 2;
constexpr size_t kIdentOff = 4;
constexpr size_t kFlagsFragOff = 6;
constexpr size_t kTtlOff = 8;
constexpr size_t kProtocolOff = 9;
constexpr size_t kChecksumOff = 10;
constexpr size_t kSrcOff = 12;
constexpr size_t kDstOff = 16;

constexpr uint16_t kFlagDf = 0x4000;
constexpr uint16_t kFlagMf = 0x2000;
constexpr uint16_t kFragOffsetMask = 0x1fff;  // in units of 8 bytes

}  // namespace

Drop ParseIpv4(Bytes packet, Ipv4Header* out, Bytes* payload, bool verify_checksum) {
  if (packet.size() < kIpv4MinHeaderLen) return Drop::kTruncated;
  const uint8_t version_ihl = Load8(packet, kVersionIhlOff);
  if ((version_ihl >> 4) != 4) return Drop::kBadIpVersion;
  const size_t header_len = size_t{version_ihl & 0x0fu} * 4;
  if (header_len < kIpv4MinHeaderLen || header_len > packet.size()) return Drop::kBadIpHeaderLen;
  const uint16_t total_len = Load16(packet, kTotalLenOff);
  // Bytes after total_len are link padding (Ethernet's 60-byte minimum) and are ignored.
  if (total_len < header_len || total_len > packet.size()) return Drop::kBadIpTotalLen;
  // Options, if any, are covered by the checksum and otherwise skipped.
  if (verify_checksum && InternetChecksum(packet.first(header_len)) != 0) {
    return Drop::kBadIpChecksum;
  }

  const uint16_t flags_frag = Load16(packet, kFlagsFragOff);
  out->header_len = static_cast<uint8_t>(header_len);
  out->tos = Load8(packet, kTosOff);
  out->total_len = total_len;
  out->ident = Load16(packet, kIdentOff);
  out->dont_fragment = (flags_frag & kFlagDf) != 0;
  out->more_fragments = (flags_frag & kFlagMf) != 0;
  out->frag_offset = static_cast<uint16_t>((flags_frag & kFragOffsetMask) * 8);
  out->ttl = Load8(packet, kTtlOff);
  out->protocol = Load8(packet, kProtocolOff);
  out->src = Ipv4Addr(Load32(packet, kSrcOff));
  out->dst = Ipv4Addr(Load32(packet, kDstOff));
  *payload = packet.subspan(header_len, total_len - header_len);
  return Drop::kNone;
}

void EmitIpv4(MutBytes out, const Ipv4Header& h) {
  uint16_t flags_frag = static_cast<uint16_t>((h.frag_offset / 8) & kFragOffsetMask);
  if (h.dont_fragment) flags_frag |= kFlagDf;
  if (h.more_fragments) flags_frag |= kFlagMf;

  Store8(out, kVersionIhlOff, 0x45);
  Store8(out, kTosOff, h.tos);
  Store16(out, kTotalLenOff, h.total_len);
  Store16(out, kIdentOff, h.ident);
  Store16(out, kFlagsFragOff, flags_frag);
  Store8(out, kTtlOff, h.ttl);
  Store8(out, kProtocolOff, h.protocol);
  Store16(out, kChecksumOff, 0);
  Store32(out, kSrcOff, h.src.value());
  Store32(out, kDstOff, h.dst.value());
  Store16(out, kChecksumOff, InternetChecksum(out.first(kIpv4MinHeaderLen)));
}

}  // namespace shake::wire
