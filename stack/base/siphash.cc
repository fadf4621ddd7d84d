// SipHash-2-4: two compression rounds per 8-byte block, four finalization rounds.
//
// Reference: Aumasson and Bernstein, "SipHash: a fast short-input PRF" (2012), appendix A. The
// key and message words are little-endian regardless of the host.
#include "stack/base/siphash.h"

#include <cstddef>

namespace shake {
namespace {

constexpr uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

// Little-endian load of `n` (<= 8) bytes starting at data[off].
uint64_t LoadLe(std::span<const std::byte> data, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(data[off + i])} << (8 * i);
  return v;
}

uint64_t KeyWord(const SipKey& key, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= uint64_t{key[off + i]} << (8 * i);
  return v;
}

struct SipState {
  uint64_t v0, v1, v2, v3;

  void Round() {
    v0 += v1;
    v1 = Rotl(v1, 13);
    v1 ^= v0;
    v0 = Rotl(v0, 32);
    v2 += v3;
    v3 = Rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = Rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = Rotl(v1, 17);
    v1 ^= v2;
    v2 = Rotl(v2, 32);
  }
  void Compress(uint64_t m) {
    v3 ^= m;
    Round();
    Round();
    v0 ^= m;
  }
};

}  // namespace

uint64_t SipHash24(const SipKey& key, std::span<const std::byte> data) {
  const uint64_t k0 = KeyWord(key, 0);
  const uint64_t k1 = KeyWord(key, 8);
  SipState s{k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
             k1 ^ 0x7465646279746573ull};

  const size_t n = data.size();
  const size_t whole = n & ~size_t{7};
  for (size_t off = 0; off < whole; off += 8) s.Compress(LoadLe(data, off, 8));

  // The last block holds the remaining 0..7 bytes and the message length mod 256 in its top byte.
  s.Compress(LoadLe(data, whole, n - whole) | (uint64_t{n & 0xff} << 56));

  s.v2 ^= 0xff;
  s.Round();
  s.Round();
  s.Round();
  s.Round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

}  // namespace shake
