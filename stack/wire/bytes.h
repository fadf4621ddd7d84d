// Bounds-checked big-endian loads and stores over byte spans.
//
// Every wire view in stack/wire/ reads through these helpers after checking the buffer's length
// once; nothing overlays structs on packet memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "stack/base/addr.h"

namespace shake::wire {

using Bytes = std::span<const std::byte>;
using MutBytes = std::span<std::byte>;

inline uint8_t Load8(Bytes b, size_t off) { return static_cast<uint8_t>(b[off]); }
inline uint16_t Load16(Bytes b, size_t off) {
  return static_cast<uint16_t>((static_cast<unsigned>(b[off]) << 8) |
                               static_cast<unsigned>(b[off + 1]));
}
inline uint32_t Load32(Bytes b, size_t off) {
  return (uint32_t{Load16(b, off)} << 16) | Load16(b, off + 2);
}
inline void Store8(MutBytes b, size_t off, uint8_t v) { b[off] = std::byte{v}; }
inline void Store16(MutBytes b, size_t off, uint16_t v) {
  b[off] = std::byte(v >> 8);
  b[off + 1] = std::byte(v & 0xff);
}
inline void Store32(MutBytes b, size_t off, uint32_t v) {
  Store16(b, off, static_cast<uint16_t>(v >> 16));
  Store16(b, off + 2, static_cast<uint16_t>(v & 0xffff));
}
inline MacAddr LoadMac(Bytes b, size_t off) {
  MacAddr m;
  for (size_t i = 0; i < m.b.size(); ++i) m.b[i] = Load8(b, off + i);
  return m;
}
inline void StoreMac(MutBytes b, size_t off, const MacAddr& m) {
  for (size_t i = 0; i < m.b.size(); ++i) Store8(b, off + i, m.b[i]);
}

}  // namespace shake::wire
