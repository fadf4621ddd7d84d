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

struct Counters {
  uint64_t frames_in = 0;
  uint64_t frames_out = 0;
  uint64_t ip_in = 0;
  uint64_t ip_out = 0;
  uint64_t ip_reassembled = 0;
  uint64_t icmp_in = 0;
  uint64_t icmp_out = 0;
  uint64_t icmp_errors_delivered = 0;
  uint64_t arp_in = 0;
  uint64_t arp_out = 0;
  uint64_t tcp_segments_in = 0;
  uint64_t tcp_segments_out = 0;
  uint64_t tcp_retransmits = 0;
  uint64_t tcp_fast_retransmits = 0;
  uint64_t tcp_rto_expirations = 0;
  uint64_t tcp_active_opens = 0;
  uint64_t tcp_passive_opens = 0;
  uint64_t tcp_failed_attempts = 0;
  uint64_t tcp_resets_in = 0;
  uint64_t tcp_resets_out = 0;
  uint64_t tcp_challenge_acks = 0;
  uint64_t tcp_challenge_acks_limited = 0;
  uint64_t tcp_dup_acks_in = 0;
  uint64_t tcp_ooo_segments_in = 0;
  uint64_t tcp_zero_window_probes = 0;
  uint64_t tcp_keepalive_probes = 0;
  uint64_t tcp_timeouts = 0;
  uint64_t tcp_time_wait_reused = 0;
  uint64_t tcp_loss_probes = 0;            // RFC 8985 7.3 probes sent (PTO expirations)
  uint64_t tcp_loss_probe_recoveries = 0;  // RFC 8985 7.4: a probe repaired a real loss
  // SYN cookies (RFC 4987 3.6; Linux's SyncookiesSent, SyncookiesRecv, SyncookiesFailed):
  // cookie SYN-ACKs sent, final ACKs whose cookie was valid, and ACKs whose cookie was not.
  uint64_t tcp_syncookies_sent = 0;
  uint64_t tcp_syncookies_recv = 0;
  uint64_t tcp_syncookies_failed = 0;
  std::array<uint64_t, static_cast<size_t>(Drop::kCount)> drops{};

  void CountDrop(Drop d) { ++drops[static_cast<size_t>(d)]; }
  uint64_t dropped(Drop d) const { return drops[static_cast<size_t>(d)]; }
  uint64_t total_drops() const {
    uint64_t n = 0;
    for (size_t i = 1; i < drops.size(); ++i) n += drops[i];
    return n;
  }
};

}  // namespace shake
