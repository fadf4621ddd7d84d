// Ethernet II framing: 6-byte destination, 6-byte source, 2-byte EtherType.
#include "stack/wire/ethernet.h"

namespace shake::wire {
namespace {

constexpr size_t kDstOff = 0;
constexpr size_t kSrcOff = 6;
constexpr size_t kTypeOff = 12;
constexpr uint16_t kEtherTypeVlan = 0x8100;

}  // namespace

Drop ParseEthernet(Bytes frame, EthernetHeader* out, Bytes* payload) {
  if (frame.size() < kEthernetHeaderLen) return Drop::kTruncated;
  const uint16_t type = Load16(frame, kTypeOff);
  // 802.1Q tags are not configured on the stack's device; a tagged frame is not for us.
  if (type == kEtherTypeVlan) return Drop::kUnknownEtherType;
  out->dst = LoadMac(frame, kDstOff);
  out->src = LoadMac(frame, kSrcOff);
  out->ethertype = type;
  *payload = frame.subspan(kEthernetHeaderLen);
  return Drop::kNone;
}

void EmitEthernet(MutBytes out, const EthernetHeader& h) {
  StoreMac(out, kDstOff, h.dst);
  StoreMac(out, kSrcOff, h.src);
  Store16(out, kTypeOff, h.ethertype);
}

}  // namespace shake::wire
