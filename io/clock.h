// The engine's clock: CLOCK_MONOTONIC as a shake::Instant.
//
// stack/ never reads a clock; io/ reads this one and passes the value into every stack call.
#pragma once

#include <time.h>

#include "stack/base/time.h"

namespace shake::io {

inline Instant MonotonicNow() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Instant::FromNanos(int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec);
}

// Nanoseconds between the realtime and the monotonic clock now, for writing wall-clock times
// (pcap records) from monotonic Instants.
inline int64_t RealtimeOffsetNanos() {
  timespec rt{}, mono{};
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_MONOTONIC, &mono);
  return (int64_t{rt.tv_sec} - int64_t{mono.tv_sec}) * 1000000000 + (rt.tv_nsec - mono.tv_nsec);
}

}  // namespace shake::io
