// ICMPv4 (RFC 792): echo, destination unreachable (including fragmentation needed, RFC 1191)
// and the other error types, which carry the offending IP header plus at least 8 bytes.
#pragma once

#include <cstdint>

#include "stack/counters.h"
#include "stack/wire/bytes.h"

namespace shake::wire {

inline constexpr size_t kIcmpHeaderLen = 8;
inline constexpr uint8_t kIcmpEchoReply = 0;
inline constexpr uint8_t kIcmpDestUnreachable = 3;
inline constexpr uint8_t kIcmpEchoRequest = 8;
inline constexpr uint8_t kIcmpTimeExceeded = 11;
inline constexpr uint8_t kIcmpParamProblem = 12;
// Codes of destination unreachable.
inline constexpr uint8_t kIcmpNetUnreachable = 0;
inline constexpr uint8_t kIcmpHostUnreachable = 1;
inline constexpr uint8_t kIcmpProtoUnreachable = 2;
inline constexpr uint8_t kIcmpPortUnreachable = 3;
inline constexpr uint8_t kIcmpFragNeeded = 4;

struct IcmpMessage {
  uint8_t type = 0;
  uint8_t code = 0;
  uint32_t rest = 0;  // echo: id << 16 | seq; frag-needed: low 16 bits are the next-hop MTU
  Bytes payload;      // echo data, or the quoted IP header and leading transport bytes
};

// Checks the length and, when `verify_checksum`, the checksum over the whole message.
Drop ParseIcmp(Bytes data, IcmpMessage* out, bool verify_checksum = true);
// Writes the header and copies the payload; `out` must hold kIcmpHeaderLen + payload bytes.
// Returns the number of bytes written.
size_t EmitIcmp(MutBytes out, const IcmpMessage& m);

}  // namespace shake::wire
