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
// RFC 8985 7.2's WCDelAckT: the worst-case delayed ACK a lone probe-timed segment may meet
// (also Linux's TCP_DELACK_MAX).
inline constexpr Duration kTlpWorstCaseDelAck = Duration::Millis(200);
// The probe timeout's floor, as Linux's tcp_schedule_loss_probe (at least 10 ms).
inline constexpr Duration kTlpMinPto = Duration::Millis(10);

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
