// TCP headers and options (RFC 9293 section 3.1, RFC 7323, RFC 2018).
//
// ParseTcp never reads out of bounds: a header shorter than 20 bytes, a data offset below 5 or
// past the end, or an option whose length is 0, 1 or past the end is rejected with a Drop reason.
// Unknown options are skipped by their length. Options are emitted in the layouts Linux uses, so
// segments compare equal to the kernel's in conformance scripts.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "stack/base/addr.h"
#include "stack/base/seqnum.h"
#include "stack/counters.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

inline constexpr size_t kTcpMinHeaderLen = 20;
inline constexpr size_t kTcpMaxOptionsLen = 40;

namespace tcpflag {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
inline constexpr uint8_t kUrg = 0x20;
inline constexpr uint8_t kEce = 0x40;
inline constexpr uint8_t kCwr = 0x80;
}  // namespace tcpflag

struct SackBlock {
  SeqNum left;   // first sequence number of the block
  SeqNum right;  // one past the last
  bool operator==(const SackBlock&) const = default;
};

struct TcpTimestamp {
  uint32_t val = 0;
  uint32_t ecr = 0;
  bool operator==(const TcpTimestamp&) const = default;
};

struct TcpOptions {
  std::optional<uint16_t> mss;
  std::optional<uint8_t> window_scale;  // as received; the TCP layer clamps values above 14
  bool sack_permitted = false;
  std::optional<TcpTimestamp> timestamp;
  std::array<SackBlock, 4> sack{};
  uint8_t sack_count = 0;

  bool operator==(const TcpOptions&) const = default;
};

struct TcpHeader {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  SeqNum seq;
  SeqNum ack;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t urgent = 0;
  TcpOptions options;

  bool has(uint8_t flag) const { return (flags & flag) != 0; }
};

// Parses the segment at the start of `segment` (the IP payload). Verifies the checksum over the
// pseudo-header when `verify_checksum`. On success `payload` is the data after the header.
Drop ParseTcp(Bytes segment, Ipv4Addr src, Ipv4Addr dst, TcpHeader* out, Bytes* payload,
              bool verify_checksum = true);

// Length of the header that EmitTcpHeader writes for these options (20 + padded options).
// Option layouts, as Linux writes them:
//   SYN with timestamps:    MSS, SACK-permitted, TS, NOP, WS         (MSS 4, SACKOK 2, TS 10, 1, WS 3)
//   SYN without timestamps: MSS, NOP, NOP, SACK-permitted, NOP, WS   (each present part optional;
//                           absent parts drop out, and the total is padded with NOPs... see .cc)
//   other segments:         NOP, NOP, TS  then  NOP, NOP, SACK blocks
size_t TcpHeaderLen(const TcpOptions& options);

// Writes the header and options into `out` (at least TcpHeaderLen bytes) with a zero checksum.
// Returns the header length.
size_t EmitTcpHeader(MutBytes out, const TcpHeader& h);

// Computes and stores the checksum of a complete segment (header + payload) in place.
void FillTcpChecksum(MutBytes segment, Ipv4Addr src, Ipv4Addr dst);

}  // namespace shake::wire
