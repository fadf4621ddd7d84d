// Internal helpers shared by the two halves of the control block: tcb.cc (arrival, opening,
// application calls) and tcb_send.cc (loss detection, output, timers). Not part of the API.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stack/base/time.h"
#include "stack/stack.h"
#include "stack/wire/tcp.h"

namespace shake::tcb_internal {

inline constexpr uint16_t kMinMss = 48 + 40;  // never fewer than 48 payload bytes (+ headers)
inline constexpr int kMaxQuickAcks = 16;      // Linux TCP_MAX_QUICKACKS
inline constexpr size_t kTimestampOptionLen = 12;
inline constexpr int kMaxReordering = 300;  // Linux sysctl_tcp_max_reordering
inline constexpr int kMaxReoWndMult = 64;   // the window is bounded by SRTT long before this
// RACK timer granularity (see RackReoWnd).
inline constexpr Duration kMinReoWnd = Duration::Millis(1);
// Linux's TCP_TIMEOUT_MIN: the slack its timers add so that jitter cannot fire them early (the
// tail loss probe's allowance with several segments in flight, the RACK reordering timer).
inline constexpr Duration kTimerSlack = Duration::Millis(2);
// Linux's TCP_RESOURCE_PROBE_INTERVAL: how often the probe timer retries data that the device
// refused (local congestion), without backoff.
inline constexpr Duration kResourceProbeInterval = Duration::Millis(500);

inline bool IsSynchronized(TcpState s) {
  return s != TcpState::kClosed && s != TcpState::kListen && s != TcpState::kSynSent &&
         s != TcpState::kSynReceived;
}

// The sequence space a segment occupies: its data plus one for SYN and one for FIN.
inline uint32_t SegLen(const wire::TcpHeader& h, size_t payload) {
  return static_cast<uint32_t>(payload) + (h.has(wire::tcpflag::kSyn) ? 1u : 0u) +
         (h.has(wire::tcpflag::kFin) ? 1u : 0u);
}

}  // namespace shake::tcb_internal
