// Virtual time for the stack: Instant and Duration as strong nanosecond types.
//
// stack/ never reads a clock. The host (io/ or a test) passes the current Instant into every
// call that needs it, and the stack answers with the next Instant at which it wants to be polled.
#pragma once

#include <compare>
#include <cstdint>
#include <limits>

namespace shake {

class Duration {
 public:
  constexpr Duration() = default;
  static constexpr Duration Nanos(int64_t n) { return Duration(n); }
  static constexpr Duration Micros(int64_t n) { return Duration(n * 1000); }
  static constexpr Duration Millis(int64_t n) { return Duration(n * 1000 * 1000); }
  static constexpr Duration Seconds(int64_t n) { return Duration(n * 1000 * 1000 * 1000); }
  static constexpr Duration Zero() { return Duration(0); }
  static constexpr Duration Infinite() { return Duration(std::numeric_limits<int64_t>::max()); }

  constexpr int64_t nanos() const { return ns_; }
  constexpr int64_t micros() const { return ns_ / 1000; }
  constexpr int64_t millis() const { return ns_ / 1000000; }

  constexpr Duration operator+(Duration o) const { return Duration(ns_ + o.ns_); }
  constexpr Duration operator-(Duration o) const { return Duration(ns_ - o.ns_); }
  constexpr Duration operator*(int64_t k) const { return Duration(ns_ * k); }
  constexpr Duration operator/(int64_t k) const { return Duration(ns_ / k); }
  constexpr Duration& operator+=(Duration o) { ns_ += o.ns_; return *this; }
  constexpr Duration& operator-=(Duration o) { ns_ -= o.ns_; return *this; }
  constexpr auto operator<=>(const Duration&) const = default;

 private:
  constexpr explicit Duration(int64_t ns) : ns_(ns) {}
  int64_t ns_ = 0;
};

constexpr Duration Min(Duration a, Duration b) { return a < b ? a : b; }
constexpr Duration Max(Duration a, Duration b) { return a < b ? b : a; }

// A point in time, counted from an epoch the host chooses (io/ uses CLOCK_MONOTONIC).
class Instant {
 public:
  constexpr Instant() = default;
  static constexpr Instant FromNanos(int64_t n) { return Instant(n); }
  static constexpr Instant Never() { return Instant(std::numeric_limits<int64_t>::max()); }

  constexpr int64_t nanos() const { return ns_; }
  constexpr bool is_never() const { return ns_ == std::numeric_limits<int64_t>::max(); }

  // Saturates at Never() so that `now + Duration::Infinite()` means "no deadline".
  constexpr Instant operator+(Duration d) const {
    if (is_never() || d.nanos() >= std::numeric_limits<int64_t>::max() - ns_) return Never();
    return Instant(ns_ + d.nanos());
  }
  constexpr Instant operator-(Duration d) const { return Instant(ns_ - d.nanos()); }
  constexpr Duration operator-(Instant o) const { return Duration::Nanos(ns_ - o.ns_); }
  constexpr auto operator<=>(const Instant&) const = default;

 private:
  constexpr explicit Instant(int64_t ns) : ns_(ns) {}
  int64_t ns_ = 0;
};

constexpr Instant Min(Instant a, Instant b) { return a < b ? a : b; }
constexpr Instant Max(Instant a, Instant b) { return a < b ? b : a; }

}  // namespace shake
