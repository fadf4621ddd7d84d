// ARP for IPv4 over Ethernet (RFC 826).
#pragma once

#include <cstdint>

#include "stack/base/addr.h"
#include "stack/counters.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

inline constexpr size_t kArpLen = 28;
inline constexpr uint16_t kArpRequest = 1;
inline constexpr uint16_t kArpReply = 2;

struct ArpPacket {
  uint16_t op = 0;
  MacAddr sender_mac;
  Ipv4Addr sender_ip;
  MacAddr target_mac;
  Ipv4Addr target_ip;
};

// Accepts only hardware type 1, protocol 0x0800, lengths 6 and 4; otherwise Drop::kBadArp.
Drop ParseArp(Bytes payload, ArpPacket* out);
void EmitArp(MutBytes out, const ArpPacket& p);  // writes kArpLen bytes

}  // namespace shake::wire
