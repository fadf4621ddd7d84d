// ARP for IPv4 over Ethernet (RFC 826): the 28-byte Ethernet/IPv4 form only.
#include "stack/wire/arp.h"

namespace shake::wire {
namespace {

constexpr size_t kHtypeOff = 0;
constexpr size_t kPtypeOff = 2;
constexpr size_t kHlenOff = 4;
constexpr size_t kPlenOff = 5;
constexpr size_t kOpOff = 6;
constexpr size_t kSenderMacOff = 8;
constexpr size_t kSenderIpOff = 14;
constexpr size_t kTargetMacOff = 18;
constexpr size_t kTargetIpOff = 24;

constexpr uint16_t kHtypeEthernet = 1;
constexpr uint16_t kPtypeIpv4 = 0x0800;

}  // namespace

Drop ParseArp(Bytes payload, ArpPacket* out) {
  // Ethernet pads short frames, so bytes past the 28 are ignored.
  if (payload.size() < kArpLen) return Drop::kTruncated;
  if (Load16(payload, kHtypeOff) != kHtypeEthernet || Load16(payload, kPtypeOff) != kPtypeIpv4 ||
      Load8(payload, kHlenOff) != 6 || Load8(payload, kPlenOff) != 4) {
    return Drop::kBadArp;
  }
  const uint16_t op = Load16(payload, kOpOff);
  if (op != kArpRequest && op != kArpReply) return Drop::kBadArp;
  out->op = op;
  out->sender_mac = LoadMac(payload, kSenderMacOff);
  out->sender_ip = Ipv4Addr(Load32(payload, kSenderIpOff));
  out->target_mac = LoadMac(payload, kTargetMacOff);
  out->target_ip = Ipv4Addr(Load32(payload, kTargetIpOff));
  return Drop::kNone;
}

void EmitArp(MutBytes out, const ArpPacket& p) {
  Store16(out, kHtypeOff, kHtypeEthernet);
  Store16(out, kPtypeOff, kPtypeIpv4);
  Store8(out, kHlenOff, 6);
  Store8(out, kPlenOff, 4);
  Store16(out, kOpOff, p.op);
  StoreMac(out, kSenderMacOff, p.sender_mac);
  Store32(out, kSenderIpOff, p.sender_ip.value());
  StoreMac(out, kTargetMacOff, p.target_mac);
  Store32(out, kTargetIpOff, p.target_ip.value());
}

}  // namespace shake::wire
