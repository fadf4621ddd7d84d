// Ethernet II framing (no 802.1Q tags are generated; tagged frames are dropped).
#pragma once

#include <cstdint>

#include "stack/base/addr.h"
#include "stack/counters.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

inline constexpr size_t kEthernetHeaderLen = 14;
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;

struct EthernetHeader {
  MacAddr dst;
  MacAddr src;
  uint16_t ethertype = 0;
};

// On success fills `out` and `payload` (the bytes after the header) and returns Drop::kNone.
Drop ParseEthernet(Bytes frame, EthernetHeader* out, Bytes* payload);
// Writes the 14-byte header at the start of `out` (which must hold at least that many bytes).
void EmitEthernet(MutBytes out, const EthernetHeader& h);

}  // namespace shake::wire
