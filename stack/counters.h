// Counters in the spirit of nstat: what the stack received, sent, and dropped, and why.
//
// Every untrusted byte that the stack refuses is dropped with a Drop reason and counted here;
// nothing in stack/ asserts on packet contents.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace shake {

#define SHAKE_DROP_REASONS(X)                                                    \
  X(kNone, "none")                                                               \
  X(kTruncated, "truncated")                                                     \
  X(kBadEthernet, "bad_ethernet")                                                \
  X(kNotForUs, "not_for_us")                                                     \
  X(kUnknownEtherType, "unknown_ethertype")                                      \
  X(kBadArp, "bad_arp")                                                          \
  X(kBadIpVersion, "bad_ip_version")                                             \
  X(kBadIpHeaderLen, "bad_ip_header_len")                                        \
  X(kBadIpTotalLen, "bad_ip_total_len")                                          \
  X(kBadIpChecksum, "bad_ip_checksum")                                           \
  X(kBadIpAddress, "bad_ip_address")                                             \
  X(kLand, "land")                                                               \
  X(kUnknownProtocol, "unknown_protocol")                                        \
  X(kFragmentBad, "fragment_bad")                                                \
  X(kFragmentOverlap, "fragment_overlap")                                        \
  X(kFragmentTooMany, "fragment_memory")                                         \
  X(kFragmentTimeout, "fragment_timeout")                                        \
  X(kBadIcmp, "bad_icmp")                                                        \
  X(kBadIcmpChecksum, "bad_icmp_checksum")                                       \
  X(kIcmpIgnored, "icmp_ignored")                                                \
  X(kBadTcpHeaderLen, "bad_tcp_header_len")                                      \
  X(kBadTcpChecksum, "bad_tcp_checksum")                                         \
  X(kBadTcpOption, "bad_tcp_option")                                             \
  X(kBadTcpFlags, "bad_tcp_flags")                                               \
  X(kNoConnection, "no_connection")                                              \
  X(kOutOfWindow, "out_of_window")                                               \
  X(kBadAck, "bad_ack")                                                          \
  X(kAckUnsent, "ack_unsent_data")                                               \
  X(kPawsReject, "paws")                                                         \
  X(kRstIgnored, "rst_ignored")                                                  \
  X(kSynQueueFull, "syn_queue_full")                                             \
  X(kAcceptQueueFull, "accept_queue_full")                                       \
  X(kNoBuffer, "no_buffer")                                                      \
  X(kNoRoute, "no_route")                                                        \
  X(kTxFull, "tx_full")

enum class Drop : uint8_t {
#define SHAKE_X(name, text) name,
  SHAKE_DROP_REASONS(SHAKE_X)
#undef SHAKE_X
      kCount
};

constexpr std::string_view DropName(Drop d) {
  constexpr std::string_view kNames[] = {
#define SHAKE_X(name, text) text,
      SHAKE_DROP_REASONS(SHAKE_X)
#undef SHAKE_X
  };
  return kNames[static_cast<size_t>(d)];
}

// Every counter, by the name nstat-like tools show (shake stat): the one list, so that a counter
// added here is shown everywhere.
#define SHAKE_COUNTERS(X)                                                                   \
  X(frames_in) X(frames_out) X(ip_in) X(ip_out) X(ip_reassembled) X(icmp_in) X(icmp_out)    \
  X(icmp_errors_delivered) X(arp_in) X(arp_out) X(tcp_segments_in) X(tcp_segments_out)      \
  X(tcp_retransmits) X(tcp_fast_retransmits) X(tcp_rto_expirations) X(tcp_active_opens)     \
  X(tcp_passive_opens) X(tcp_failed_attempts) X(tcp_resets_in) X(tcp_resets_out)            \
  X(tcp_challenge_acks) X(tcp_challenge_acks_limited) X(tcp_dup_acks_in)                    \
  X(tcp_ooo_segments_in) X(tcp_ooo_dropped) X(tcp_zero_window_probes) X(tcp_keepalive_probes) X(tcp_timeouts)  \
  X(tcp_time_wait_reused)                                                                   \
  /* RFC 8985 7.3: probes sent (PTO expirations); 7.4: a probe repaired a real loss */      \
  X(tcp_loss_probes) X(tcp_loss_probe_recoveries)                                           \
  /* SYN cookies (RFC 4987 3.6; Linux's SyncookiesSent, SyncookiesRecv, SyncookiesFailed): */ \
  /* cookie SYN-ACKs sent, final ACKs whose cookie was valid, and ACKs whose was not */     \
  X(tcp_syncookies_sent) X(tcp_syncookies_recv) X(tcp_syncookies_failed)                   \
  /* TcpConfig::memory_limit (Linux's tcp_mem): out-of-order segments (TCPOFODrop) and */   \
  /* in-order ones (TCPRcvQDrop) dropped unstored because the stack's memory was at its */  \
  /* limit, sends cut short by it, and times the memory rose above the pressure level */    \
  /* (TCPMemoryPressures); orphans reset at the limit to give their memory back */        \
  /* (TCPAbortOnMemory) */                                                                  \
  X(tcp_ofo_mem_drops) X(tcp_rcvq_drops) X(tcp_send_mem_limited) X(tcp_mem_pressures)       \
  X(tcp_abort_on_memory)

struct Counters {
#define SHAKE_X(name) uint64_t name = 0;
  SHAKE_COUNTERS(SHAKE_X)
#undef SHAKE_X
  std::array<uint64_t, static_cast<size_t>(Drop::kCount)> drops{};

  // f(name, value) for every counter of SHAKE_COUNTERS, in its order (drops aside).
  template <class F>
  void ForEach(F&& f) const {
#define SHAKE_X(name) f(std::string_view(#name), name);
    SHAKE_COUNTERS(SHAKE_X)
#undef SHAKE_X
  }

  void CountDrop(Drop d) { ++drops[static_cast<size_t>(d)]; }
  uint64_t dropped(Drop d) const { return drops[static_cast<size_t>(d)]; }
  uint64_t total_drops() const {
    uint64_t n = 0;
    for (size_t i = 1; i < drops.size(); ++i) n += drops[i];
    return n;
  }
};

}  // namespace shake
