// Helpers for wire tests: byte vectors from integer lists and spans over them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <vector>

namespace shake::wire::testing {

using ByteVec = std::vector<std::byte>;

inline ByteVec B(std::initializer_list<int> v) {
  ByteVec out;
  out.reserve(v.size());
  for (int x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

inline ByteVec Cat(const ByteVec& a, const ByteVec& b) {
  // Sized once and filled, rather than grown by insert(): GCC 12 at -O3 reports a false
  // -Warray-bounds inside vector::insert's reallocation here.
  ByteVec out(a.size() + b.size());
  std::copy(a.begin(), a.end(), out.begin());
  std::copy(b.begin(), b.end(), out.begin() + static_cast<std::ptrdiff_t>(a.size()));
  return out;
}

inline std::span<const std::byte> View(const ByteVec& v) { return {v.data(), v.size()}; }
inline std::span<std::byte> MutView(ByteVec& v) { return {v.data(), v.size()}; }

// 0, 1, 2, ... n-1 (mod 256).
inline ByteVec Counting(size_t n, int start = 0) {
  ByteVec out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = static_cast<std::byte>((static_cast<size_t>(start) + i) & 0xff);
  return out;
}

}  // namespace shake::wire::testing
