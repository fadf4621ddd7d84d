// IPv4 headers (RFC 791): parse with every length checked, emit with the checksum filled in.
#pragma once

#include <cstdint>

#include "stack/base/addr.h"
#include "stack/counters.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

inline constexpr size_t kIpv4MinHeaderLen = 20;
inline constexpr uint8_t kProtoIcmp = 1;
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

struct Ipv4Header {
  uint8_t header_len = kIpv4MinHeaderLen;  // in bytes (IHL * 4)
  uint8_t tos = 0;
  uint16_t total_len = 0;
  uint16_t ident = 0;
  bool dont_fragment = false;
  bool more_fragments = false;
  uint16_t frag_offset = 0;  // in bytes (the field times 8)
  uint8_t ttl = 64;
  uint8_t protocol = 0;
  Ipv4Addr src;
  Ipv4Addr dst;

  bool is_fragment() const { return more_fragments || frag_offset != 0; }
};

// Parses the header at the start of `packet`. Checks version 4, IHL >= 5, IHL*4 <= total length
// <= packet size (trailing link padding beyond total length is ignored), and the header checksum
// when `verify_checksum`. On success `payload` is the bytes between the header and total length.
Drop ParseIpv4(Bytes packet, Ipv4Header* out, Bytes* payload, bool verify_checksum = true);

// Writes a 20-byte header (no options; header_len is ignored and taken as 20) with its checksum.
void EmitIpv4(MutBytes out, const Ipv4Header& h);

}  // namespace shake::wire
