// The Internet checksum (RFC 1071).
//
// Add() sums the span as little-endian 64-bit words with end-around carry, so the compiler can
// turn each word into one load and an add-with-carry. RFC 1071 section 2 (B) makes this valid:
// the one's-complement sum is independent of byte order, so the folded little-endian sum is the
// big-endian sum with its two bytes swapped. A span that starts after an odd number of bytes is
// shifted by one byte, which swaps the bytes of its sum once more; the two swaps cancel.
#include "stack/wire/checksum.h"

namespace shake::wire {
namespace {

// Little-endian composition. Indexing a fixed 8-byte subspan by constants (not `off + k`) lets
// GCC and Clang merge the eight byte loads into one 8-byte load.
inline uint64_t LoadLe64(Bytes b, size_t off) {
  const Bytes w = b.subspan(off, 8);
  return uint64_t{Load8(w, 0)} | (uint64_t{Load8(w, 1)} << 8) | (uint64_t{Load8(w, 2)} << 16) |
         (uint64_t{Load8(w, 3)} << 24) | (uint64_t{Load8(w, 4)} << 32) |
         (uint64_t{Load8(w, 5)} << 40) | (uint64_t{Load8(w, 6)} << 48) |
         (uint64_t{Load8(w, 7)} << 56);
}

// One's-complement addition: a carry out of bit 63 comes back in at bit 0.
inline uint64_t AddCarry(uint64_t acc, uint64_t v) {
  acc += v;
  return acc + (acc < v ? 1 : 0);
}

// Folds a 64-bit one's-complement sum to 16 bits. Nonzero sums stay nonzero.
inline uint16_t Fold(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffu) + (s >> 16);
  s = (s & 0xffffu) + (s >> 16);
  return static_cast<uint16_t>(s);
}

inline uint16_t Swap16(uint16_t v) { return static_cast<uint16_t>((v << 8) | (v >> 8)); }

}  // namespace

void Checksum::Add(Bytes data) {
  const size_t n = data.size();
  if (n == 0) return;
  uint64_t a0 = 0, a1 = 0;  // two accumulators let consecutive adds overlap
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = AddCarry(a0, LoadLe64(data, i));
    a1 = AddCarry(a1, LoadLe64(data, i + 8));
    a0 = AddCarry(a0, LoadLe64(data, i + 16));
    a1 = AddCarry(a1, LoadLe64(data, i + 24));
  }
  for (; i + 8 <= n; i += 8) a0 = AddCarry(a0, LoadLe64(data, i));
  uint64_t tail = 0;  // < 8 bytes as little-endian 16-bit words; cannot overflow
  for (; i + 2 <= n; i += 2) tail += uint64_t{Load8(data, i)} | (uint64_t{Load8(data, i + 1)} << 8);
  if (i < n) tail += Load8(data, i);  // the odd byte is the high byte of a big-endian word
  a0 = AddCarry(AddCarry(a0, a1), tail);

  const uint16_t le = Fold(a0);
  // Aligned span: swap the little-endian sum into big-endian order. Shifted span: swap twice.
  sum_ += odd_ ? le : Swap16(le);
  if ((n & 1) != 0) odd_ = !odd_;
}

void Checksum::Add16(uint16_t v) {
  // Two bytes appended after an odd count straddle words: their sum has its bytes swapped.
  sum_ += odd_ ? Swap16(v) : v;
}

void Checksum::Add32(uint32_t v) {
  Add16(static_cast<uint16_t>(v >> 16));
  Add16(static_cast<uint16_t>(v & 0xffff));
}

uint16_t Checksum::Finish() const { return static_cast<uint16_t>(~Fold(sum_)); }

uint16_t InternetChecksum(Bytes data) {
  Checksum c;
  c.Add(data);
  return c.Finish();
}

void AddPseudoHeader(Checksum& c, Ipv4Addr src, Ipv4Addr dst, uint8_t protocol, uint16_t length) {
  c.Add32(src.value());
  c.Add32(dst.value());
  c.Add16(protocol);
  c.Add16(length);
}

}  // namespace shake::wire
