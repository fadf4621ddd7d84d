// The TCP states of both ends of a connection, inferred from the segments between them (TCP
// knowledge, so it lives with the stack; sans-IO like the rest of stack/): what `shake trace` shows for a host that wrote no event log (any host of a pcap, the peer of a
// libshake stack). Labeled "inferred" wherever it is shown.
//
// A small state machine following the RFC 9293 section 3.3.2 diagram. Each segment is fed twice:
// Sent() when the sender put it on the wire, and Received() when it reached the other end (the
// caller skips Received for a segment it judges lost). Within Received the segment is processed
// in the RFC's order (section 3.10.7.4): RST, SYN, ACK, then FIN.
//
//   Inference inf;
//   inf.Start(first_segment);
//   for each segment s: inf.Sent(s); if (delivered) outcome = inf.Received(s);
//   inf.state(0), inf.state(1)
//
// What it cannot see is assumed: an end whose first segment is a SYN starts CLOSED and its peer
// LISTEN; a capture that starts mid-connection starts both ends ESTABLISHED; TIME-WAIT never ends
// (its 2*MSL timer is invisible on the wire).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "stack/base/seqnum.h"
#include "stack/stack.h"

namespace shake::infer {

struct SegView {
  int from = 0;  // 0 or 1: the sender
  uint8_t flags = 0;
  SeqNum seq;
  SeqNum ack;
  uint32_t len = 0;
};

// What a received segment did at its receiver, for the marks on the ladder.
struct Outcome {
  bool rst_accepted = false;    // RFC 5961 3.2: SEG.SEQ == RCV.NXT (or acceptable in SYN-SENT)
  bool rst_not_exact = false;   // in a synchronized state but not exact: answered by a
                                // challenge ACK (or dropped when outside the window)
  bool syn_in_sync = false;     // a SYN in a synchronized state: RFC 5961 4.2, challenge ACK
  bool fin_again = false;       // a FIN already received (re-ACKed, e.g. in TIME-WAIT)
  bool fin_out_of_order = false;  // a FIN beyond RCV.NXT: not processed yet
};

// Transitions a segment the host itself sends can explain (RFC 9293 3.3.2): the host's log says
// it went to `to` and this segment went out.
bool ExplainedBySend(TcpState to, uint8_t flags);
// Transitions the arrival of a segment with these flags can cause (RFC 9293 3.3.2).
bool ExplainedByArrival(TcpState from, TcpState to, uint8_t flags);

class Inference {
 public:
  // `peer_closed`: the other end's first segment shows it was not listening: a bare SYN of its
  // own (a simultaneous open) or a RST; it then starts CLOSED rather than LISTEN.
  void Start(const SegView& first, bool peer_closed = false);
  // Returns false for a RST that cannot come from the sender's side of this connection: the
  // sender is synchronized and the RST's sequence number is not its SND.NXT (a spoofed or stale
  // reset, RFC 5961 section 3); the sender's state is then left alone.
  bool Sent(const SegView& s);
  Outcome Received(const SegView& s);

  TcpState state(int side) const { return end(side).state; }
  // The receive point RCV.NXT of `side`, when known.
  bool rcv_known(int side) const { return end(side).rcv_known; }
  SeqNum rcv_nxt(int side) const { return end(side).rcv_nxt; }

 private:
  struct End {
    TcpState state = TcpState::kClosed;
    bool iss_known = false;
    SeqNum iss;
    bool snd_known = false;
    SeqNum snd_max;  // the end of the sequence space it has sent
    bool fin_sent = false;
    SeqNum fin_seq;  // the FIN's own sequence number
    bool rcv_known = false;
    SeqNum rcv_nxt;
    bool fin_received = false;
  };
  static bool Synchronized(TcpState s);
  End& end(int side) { return end_[static_cast<size_t>(side & 1)]; }
  const End& end(int side) const { return end_[static_cast<size_t>(side & 1)]; }
  std::array<End, 2> end_;
};

// ---- Retransmissions, network duplicates, duplicate ACKs ----------------------------------------
// Marks on a connection's segments in capture order, from the wire alone (plus a sender's own
// log saying it retransmitted). A copy the network made repeats a segment exactly, down to the
// IP identification (when its sender varies it) or the timestamp value; a retransmission
// resends sequence space below its sender's highest; a duplicate ACK is RFC 5681's (section 2).
struct MarkView {
  SegView seg;
  uint32_t window = 0;
  int32_t ip_id = -1;               // -1: unknown
  std::optional<uint32_t> ts_val;   // the timestamp option's TSval, if present
  bool logged_retransmit = false;   // the sender's log called it a retransmission
};

struct SegmentMarks {
  bool duplicate = false;
  bool retransmit = false;
  int dup_ack = 0;  // 1, 2, 3...: the how-manyth duplicate ACK in a row
};

std::vector<SegmentMarks> MarkRepeats(std::span<const MarkView> segs);

}  // namespace shake::infer
