#include "stack/tcp/syn_cookie.h"

#include <cstddef>

#include "stack/wire/bytes.h"

namespace shake {

namespace {

// The cookie's layout (as Linux's): the top 8 bits hold the minute counter, the low 24 a hash
// of the counter plus the MSS index; a second hash without the counter, plus the peer's ISN,
// is added over the whole so that the ISS looks random and depends on the SYN.
constexpr uint32_t kCountShift = 24;
constexpr uint32_t kLowMask = (1u << kCountShift) - 1;

// The timestamp's low bits: | ECN (5) | SACK (4) | window scale (3..0) |, 0xf = no scaling.
constexpr uint32_t kTsBits = 6;
constexpr uint32_t kTsWscaleMask = 0xf;
constexpr uint32_t kTsSack = 1u << 4;
constexpr uint32_t kTsEcn = 1u << 5;

}  // namespace

uint32_t SynCookies::Hash(const FourTuple& tuple, uint32_t count, uint8_t which) const {
  // 17 bytes: a length no other use of a SipHash key in the stack has (ISN 12, timestamp
  // offset 13, ports 6), and `which` separates the two hashes.
  std::byte buf[17];
  wire::Store32(buf, 0, tuple.remote.addr.value());
  wire::Store32(buf, 4, tuple.local.addr.value());
  wire::Store16(buf, 8, tuple.remote.port);
  wire::Store16(buf, 10, tuple.local.port);
  wire::Store32(buf, 12, count);
  buf[16] = std::byte{which};
  return static_cast<uint32_t>(SipHash24(key_, buf));
}

SeqNum SynCookies::Make(const FourTuple& tuple, SeqNum peer_isn, uint32_t minute,
                        uint16_t* mss) const {
  uint32_t index = kMssTable.size() - 1;
  while (index > 0 && *mss < kMssTable[index]) --index;
  *mss = kMssTable[index];
  const uint32_t cookie = Hash(tuple, 0, 0) + peer_isn.raw() + (minute << kCountShift) +
                          ((Hash(tuple, minute, 1) + index) & kLowMask);
  return SeqNum(cookie);
}

std::optional<uint16_t> SynCookies::Check(const FourTuple& tuple, SeqNum seg_seq, SeqNum seg_ack,
                                          uint32_t minute) const {
  // The final ACK acknowledges ISS + 1 and starts at the peer's ISN + 1.
  const uint32_t cookie = seg_ack.raw() - 1u - (Hash(tuple, 0, 0) + (seg_seq.raw() - 1u));
  const uint32_t age = (minute - (cookie >> kCountShift)) & (0xffffffffu >> kCountShift);
  if (age >= kMaxAgeMinutes) return std::nullopt;
  const uint32_t index = (cookie - Hash(tuple, minute - age, 1)) & kLowMask;
  if (index >= kMssTable.size()) return std::nullopt;
  return kMssTable[index];
}

uint32_t SynCookies::Timestamp(uint32_t clock, const Options& o) {
  uint32_t bits = o.window_scale ? (*o.window_scale & kTsWscaleMask) : kTsWscaleMask;
  if (o.sack_permitted) bits |= kTsSack;
  if (o.ecn) bits |= kTsEcn;
  uint32_t ts = ((clock >> kTsBits) << kTsBits) | bits;
  if (static_cast<int32_t>(ts - clock) > 0) ts -= 1u << kTsBits;
  return ts;
}

SynCookies::Options SynCookies::DecodeOptions(uint32_t echoed) {
  Options o;
  if ((echoed & kTsWscaleMask) != kTsWscaleMask) {
    o.window_scale = static_cast<uint8_t>(echoed & kTsWscaleMask);
  }
  o.sack_permitted = (echoed & kTsSack) != 0;
  o.ecn = (echoed & kTsEcn) != 0;
  return o;
}

}  // namespace shake
