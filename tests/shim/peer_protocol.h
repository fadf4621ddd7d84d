// Shared constants between the socket behaviour suite and its peer (tests/shim/peer.cc).
#pragma once

#include <cstddef>
#include <cstdint>

namespace shake::peer {

inline constexpr uint16_t kPortEcho = 7001;
inline constexpr uint16_t kPortDiscard = 7002;
inline constexpr uint16_t kPortClosed = 7003;  // nothing listens: RST
inline constexpr uint16_t kPortClose = 7004;
inline constexpr uint16_t kPortReset = 7005;
inline constexpr uint16_t kPortHold = 7006;
inline constexpr uint16_t kPortScript = 7007;

// The byte at offset i of a "w:N" stream.
inline constexpr unsigned char PatternByte(size_t i) { return static_cast<unsigned char>(i % 251); }

}  // namespace shake::peer
