// IPv4/TCP packets for the conformance runner: a parsed representation, an encoder and a decoder.
//
// Deliberately independent of stack/wire so that the Linux backend and the runner build without
// the stack under test. Numbers here are absolute (on the wire); the runner maps them to and
// from the script's relative sequence space.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace conformance {

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
  uint32_t left = 0;
  uint32_t right = 0;
  bool operator==(const SackBlock&) const = default;
};

struct TcpOption {
  enum class Kind : uint8_t { kEol, kNop, kMss, kWscale, kSackOk, kSack, kTimestamp, kOther };
  Kind kind = Kind::kNop;
  uint32_t a = 0;  // mss, wscale, TS val, or the raw kind for kOther
  uint32_t b = 0;  // TS ecr
  std::vector<SackBlock> blocks;
  std::vector<uint8_t> data;  // kOther: the option's bytes after kind and length
  bool operator==(const TcpOption&) const = default;
};

struct TcpPacket {
  uint32_t src_addr = 0;  // host byte order
  uint32_t dst_addr = 0;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint16_t urgent = 0;
  uint8_t tos = 0;  // the IPv4 TOS byte; its low two bits are the ECN codepoint (RFC 3168)
  std::vector<TcpOption> options;
  uint32_t payload_len = 0;  // payload bytes are not compared; the encoder writes zeros
};

// Builds an IPv4 packet (no IP options, DF set, TTL 64) with correct checksums.
std::vector<uint8_t> Encode(const TcpPacket& p);
// Parses an IPv4/TCP packet. Returns nullopt for anything else (IPv6, UDP, ICMP, fragments,
// truncated packets); `why` says what it was.
std::optional<TcpPacket> Decode(const std::vector<uint8_t>& bytes, std::string* why);

std::string FlagsString(uint8_t flags);  // packetdrill style: "S.", "P.", "F.", "R", "."
std::string AddrString(uint32_t addr);

}  // namespace conformance
