// SYN cookies (RFC 4987 section 3.6), in the manner of Linux (net/ipv4/syncookies.c).
//
// When a listener's SYN queue is full, the stack answers a SYN without keeping any state: the
// SYN-ACK's initial sequence number is a cookie that a keyed hash binds to the connection's
// addresses, ports, the peer's ISN and a minute counter, and that carries a 2-bit index into a
// table of MSS values. When timestamps are on, the low 6 bits of the SYN-ACK's TSval carry the
// peer's window scale, SACK-permitted and ECN (the echo in the final ACK brings them back).
// The final ACK is checked with Check: a valid cookie rebuilds what the SYN offered.
//
//   SynCookies cookies(secret);
//   uint16_t mss = peer_mss;
//   SeqNum iss = cookies.Make(tuple, syn.seq, minute, &mss);          // mss rounds down
//   uint32_t tsval = SynCookies::Timestamp(clock_ms, {wscale, sack, ecn}) + ts_offset;
//   ...
//   if (auto mss = cookies.Check(tuple, ack.seq, ack.ack, minute)) ...   // else: refused
//   SynCookies::Options o = SynCookies::DecodeOptions(ack.tsecr - ts_offset);
//
// Pure: the caller passes the minute counter (its time / 60 s) and keeps the secret.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "stack/base/addr.h"
#include "stack/base/seqnum.h"
#include "stack/base/siphash.h"

namespace shake {

class SynCookies {
 public:
  // The MSS values a cookie can carry (Linux's msstab: the common ones, sorted). A peer's MSS
  // is rounded down to one of them; below the first, the first (RFC 9293's default 536).
  static constexpr std::array<uint16_t, 4> kMssTable = {536, 1300, 1440, 1460};
  // A cookie is accepted for this many minutes of the counter (Linux MAX_SYNCOOKIE_AGE).
  static constexpr uint32_t kMaxAgeMinutes = 2;

  // What the SYN offered beyond its MSS, as the timestamp's low bits carry it.
  struct Options {
    std::optional<uint8_t> window_scale;  // the peer's shift, 0..14
    bool sack_permitted = false;
    bool ecn = false;
  };

  // `secret`: the stack's own key (derived from its ISN secret, never sent).
  explicit SynCookies(const SipKey& secret) : key_(secret) {}

  // The cookie ISS for a SYN from tuple.remote to tuple.local with sequence number `peer_isn`.
  // *mss (the peer's, already clamped) is rounded down to the table value the cookie encodes.
  SeqNum Make(const FourTuple& tuple, SeqNum peer_isn, uint32_t minute, uint16_t* mss) const;
  // The MSS that a final ACK's cookie encodes (SEG.ACK - 1, with SEG.SEQ - 1 as the peer's ISN),
  // or nothing when the cookie is forged, mangled or older than kMaxAgeMinutes.
  std::optional<uint16_t> Check(const FourTuple& tuple, SeqNum seg_seq, SeqNum seg_ack,
                                uint32_t minute) const;

  // The SYN-ACK's timestamp clock value (before the connection's offset): `clock` with its low
  // six bits replaced by the options, never later than `clock` (later TSvals must not go back).
  static uint32_t Timestamp(uint32_t clock, const Options& o);
  // The options in an echoed timestamp (the connection's offset already taken off).
  static Options DecodeOptions(uint32_t echoed);

 private:
  uint32_t Hash(const FourTuple& tuple, uint32_t count, uint8_t which) const;

  SipKey key_;
};

}  // namespace shake
