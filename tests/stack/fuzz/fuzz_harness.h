// The fuzzing harness for the stack, shared by the libFuzzer target (fuzz_stack.cc) and the
// corpus regression test (regression_test.cc).
//
// Each input runs against a fresh stack (198.18.0.1/24, bare IPv4 frames) that a scripted
// handshake with valid checksums has put in deep states before the input's first byte:
//   conn 0  passive: 198.18.0.2:40000 -> us:80, accepted, ESTABLISHED; the peer's ISN is
//           0xfffffff0 so sequence numbers wrap within the first bytes
//   conn 1  active:  us:ephemeral -> 198.18.0.2:443, ESTABLISHED; the stack's ISN is at or above
//           2^31 (the fixture moves the clock until it is)
//   conn 2  active:  us:ephemeral -> 198.18.0.3:22, left in SYN-SENT
// plus a listener on port 80. Both established connections negotiated MSS, window scale, SACK
// and timestamps.
//
// The input is a sequence of operations; the first byte of each picks its kind (see Op). Fields
// come from the following bytes; a short input reads as zeros. The harness tracks each
// connection's sequence numbers from the stack's own output, so structured segments can say
// "at the peer's next sequence number, acknowledging what the stack sent" and reach deep states.
// InputBuilder writes the same format, for hand-built corpus entries.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "stack/stack.h"

namespace shake::fuzz {

enum class Op : uint8_t {
  kRaw = 0,        // u16 len, bytes: an IPv4 frame exactly as given
  kRawFixed = 1,   // u8 fix bits, u8 conn, u16 len, bytes: a frame with chosen fields repaired
  kSegment = 2,    // a TCP segment on a connection, checksums valid (see SegmentSpec)
  kAdvance = 3,    // u32 microseconds (mod 130 s): advance the clock and Poll
  kSocket = 4,     // u8 call, u8 conn, u16 arg: a socket call
  kFragments = 5,  // a segment as kSegment, then u8 count and count x (u16 offset, u16 len, u8 mf)
  kIcmp = 6,       // u8 conn, u8 type, u8 code, u8 seq delta, u16 mtu: an ICMP error quoting us
  kPoll = 7,       // Poll at the current time
};
inline constexpr uint8_t kOpCount = 8;

// kRawFixed bits.
namespace fix {
inline constexpr uint8_t kVersionIhl = 1 << 0;  // byte 0 = 0x45
inline constexpr uint8_t kAddresses = 1 << 1;   // src = the connection's peer, dst = us
inline constexpr uint8_t kTotalLen = 1 << 2;    // total length = frame length
inline constexpr uint8_t kIpChecksum = 1 << 3;  // IP header checksum over IHL*4 bytes
inline constexpr uint8_t kPorts = 1 << 4;       // TCP ports = the connection's
inline constexpr uint8_t kTcpChecksum = 1 << 5; // TCP checksum over the IP payload
inline constexpr uint8_t kAll = 0x3f;
}  // namespace fix

// kSocket calls.
enum class Call : uint8_t {
  kSend = 0, kRecv, kShutdownWrite, kShutdownRead, kClose, kAccept, kConnect, kSetOptions,
};
inline constexpr uint8_t kCallCount = 8;

// A structured segment. Encoding: u8 conn, u8 flags, u8 mode, u32 seq, u32 ack, u16 window,
// u8 options length (mod 41), options, u16 payload length (mod 1461).
// mode bit 0: seq is relative to the peer's next sequence number (as a signed 32-bit delta);
// bit 1: ack is relative to the stack's SND.NXT as we saw it; bit 2: a valid timestamp option
// goes before the given options; bit 3: urgent pointer = 0xffff.
namespace mode {
inline constexpr uint8_t kSeqRelative = 1 << 0;
inline constexpr uint8_t kAckRelative = 1 << 1;
inline constexpr uint8_t kTimestamp = 1 << 2;
inline constexpr uint8_t kUrgentMax = 1 << 3;
inline constexpr uint8_t kInSequence = kSeqRelative | kAckRelative | kTimestamp;
}  // namespace mode

struct SegmentSpec {
  uint8_t conn = 0;
  uint8_t flags = 0x10;  // ACK
  uint8_t mode = mode::kInSequence;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint16_t window = 1024;
  std::vector<uint8_t> options;
  uint16_t payload_len = 0;
};

// Writes inputs in the harness's format.
class InputBuilder {
 public:
  InputBuilder& Raw(std::span<const std::byte> frame);
  InputBuilder& RawFixed(uint8_t fix_bits, uint8_t conn, std::span<const std::byte> frame);
  InputBuilder& Segment(const SegmentSpec& s);
  struct Frag {
    uint16_t offset;
    uint16_t len;
    bool more;
  };
  InputBuilder& Fragments(const SegmentSpec& s, std::span<const Frag> frags);
  InputBuilder& Advance(uint32_t micros);
  InputBuilder& Socket(Call call, uint8_t conn, uint16_t arg);
  InputBuilder& Icmp(uint8_t conn, uint8_t type, uint8_t code, int8_t seq_delta, uint16_t mtu);
  InputBuilder& Poll();
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  void U8(uint8_t v) { b_.push_back(v); }
  void U16(uint16_t v);
  void U32(uint32_t v);
  void SegmentFields(const SegmentSpec& s);
  std::vector<uint8_t> b_;
};

inline constexpr int kConnCount = 3;

// One connection as the harness sees it (the peer's view of the stack).
struct ConnView {
  FourTuple tuple;          // from the stack's side: local = us
  SocketId sock = kNoSocket;
  SeqNum stack_iss;
  SeqNum stack_nxt;         // highest sequence number the stack has sent, plus one
  SeqNum peer_nxt;          // the next sequence number the peer sends
  uint32_t stack_ts = 0;    // the stack's last TSval, for our TSecr
  uint32_t peer_ts = 1000;  // our TSval, advancing with the clock
};

// A TCP segment the stack sent, as parsed by the harness.
struct SentSegment {
  Ipv4Addr dst;
  uint16_t src_port = 0, dst_port = 0;
  uint8_t flags = 0;
  SeqNum seq, ack;
  uint16_t window = 0;
  size_t payload_len = 0;
};

class Harness {
 public:
  static constexpr Ipv4Addr kUs = Ipv4Addr(198, 18, 0, 1);
  static constexpr Ipv4Addr kPeer = Ipv4Addr(198, 18, 0, 2);
  static constexpr Ipv4Addr kPeer2 = Ipv4Addr(198, 18, 0, 3);
  static constexpr uint32_t kMaxOps = 512;

  Harness();
  ~Harness();
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Runs one input. Never fails; what it did shows in counters() and sent().
  void Run(std::span<const uint8_t> input);

  Stack& stack() { return *stack_; }
  const Counters& counters() const { return stack_->counters(); }
  // Counters right after the fixture was set up, before the input.
  const Counters& baseline() const { return baseline_; }
  const ConnView& conn(int i) const { return conns_[static_cast<size_t>(i)]; }
  SocketId listener() const { return listener_; }
  // TCP segments the stack sent while running the input (not during the fixture).
  const std::vector<SentSegment>& sent() const { return sent_; }
  Instant now() const { return now_; }
  // True when the fixture reached the states promised above (checked by the regression test).
  bool fixture_ok() const { return fixture_ok_; }

 private:
  class Sink;
  class Reader;
  void Setup(Instant start);
  void Deliver(std::span<const std::byte> frame);
  void PollNow();
  void Track(std::span<const std::byte> frame);
  std::vector<std::byte> BuildSegment(const SegmentSpec& s, bool for_fragments);
  void DoRawFixed(Reader& r);
  void DoSegment(Reader& r);
  void DoFragments(Reader& r);
  void DoSocket(Reader& r);
  void DoIcmp(Reader& r);
  ConnView& View(uint8_t c) { return conns_[c % kConnCount]; }
  static SegmentSpec ReadSegmentSpec(Reader& r);

  std::unique_ptr<std::pmr::monotonic_buffer_resource> arena_;
  std::unique_ptr<Stack> stack_;
  std::unique_ptr<Sink> sink_;
  Instant now_;
  std::array<ConnView, kConnCount> conns_{};
  SocketId listener_ = kNoSocket;
  std::vector<SocketId> extra_sockets_;
  Counters baseline_;
  std::vector<SentSegment> sent_;
  bool recording_ = false;
  bool fixture_ok_ = false;
  uint16_t frag_ident_ = 0x4000;
  std::vector<std::byte> scratch_;
};

}  // namespace shake::fuzz
