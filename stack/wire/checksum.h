// The Internet checksum (RFC 1071), accumulated incrementally across spans.
#pragma once

#include <cstdint>

#include "stack/base/addr.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

class Checksum {
 public:
  // Adds bytes as if they followed everything added before, even after an odd-length span.
  void Add(Bytes data);
  void Add16(uint16_t v);
  void Add32(uint32_t v);
  // The one's-complement of the folded sum, ready to store in a header.
  uint16_t Finish() const;

 private:
  uint64_t sum_ = 0;
  bool odd_ = false;  // an odd number of bytes has been added so far
};

uint16_t InternetChecksum(Bytes data);

// Sum of the IPv4 pseudo-header used by TCP and UDP (RFC 9293 section 3.1).
void AddPseudoHeader(Checksum& c, Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t length);

}  // namespace shake::wire
