// SipHash-2-4 (Aumasson and Bernstein), the keyed hash behind RFC 6528 initial sequence numbers
// and the connection table's hash seed.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace shake {

using SipKey = std::array<uint8_t, 16>;

uint64_t SipHash24(const SipKey& key, std::span<const std::byte> data);

}  // namespace shake
