#include "stack/tcp/state_inference.h"

#include "stack/wire/tcp.h"

namespace shake::infer {
namespace {

namespace f = wire::tcpflag;

bool Has(uint8_t flags, uint8_t flag) { return (flags & flag) != 0; }
bool Has(const SegView& s, uint8_t flag) { return Has(s.flags, flag); }

}  // namespace

bool ExplainedBySend(TcpState to, uint8_t flags) {
  if (to == TcpState::kSynSent) return Has(flags, f::kSyn) && !Has(flags, f::kAck);
  if (to == TcpState::kFinWait1 || to == TcpState::kLastAck) return Has(flags, f::kFin);
  if (to == TcpState::kClosed) return Has(flags, f::kRst);
  if (to == TcpState::kSynReceived) return Has(flags, f::kSyn);
  return false;
}

bool ExplainedByArrival(TcpState from, TcpState to, uint8_t flags) {
  using S = TcpState;
  if (Has(flags, f::kRst)) return to == S::kClosed || to == S::kListen;
  switch (to) {
    case S::kSynReceived:
      return (from == S::kListen || from == S::kSynSent) && Has(flags, f::kSyn);
    case S::kEstablished:
      return from == S::kSynSent || from == S::kSynReceived;
    case S::kCloseWait:
      return Has(flags, f::kFin);
    case S::kFinWait2:
      return from == S::kFinWait1;
    case S::kClosing:
      return from == S::kFinWait1 && Has(flags, f::kFin);
    case S::kTimeWait:
      return from == S::kClosing || Has(flags, f::kFin);
    case S::kClosed:
      return from == S::kLastAck;
    default:
      return false;
  }
}

bool Inference::Synchronized(TcpState s) {
  switch (s) {
    case TcpState::kClosed:
    case TcpState::kListen:
    case TcpState::kSynSent:
    case TcpState::kSynReceived:
      return false;
    default:
      return true;
  }
}

void Inference::Start(const SegView& first, bool peer_closed) {
  End& x = end(first.from);
  End& y = end(1 - first.from);
  x = End{};
  y = End{};
  if (Has(first, f::kSyn) && !Has(first, f::kAck)) {
    // An active open: the sender was CLOSED, the receiver presumably LISTENing (a RST in answer
    // will say otherwise).
    x.state = TcpState::kClosed;
    y.state = peer_closed ? TcpState::kClosed : TcpState::kListen;
  } else if (Has(first, f::kSyn)) {
    // A SYN-ACK first: the SYN before it was not captured.
    x.state = TcpState::kListen;
    y.state = TcpState::kSynSent;
    if (Has(first, f::kAck)) {
      y.iss_known = true;
      y.iss = first.ack - 1;
    }
  } else {
    // Mid-connection: both ends are taken as ESTABLISHED, their receive points unknown until the
    // first segments show them.
    x.state = TcpState::kEstablished;
    y.state = TcpState::kEstablished;
  }
}

bool Inference::Sent(const SegView& s) {
  End& x = end(s.from);
  if (Has(s, f::kRst)) {
    // An abort carries SND.NXT (RFC 9293 3.10.7.4); from a synchronized end, any other number
    // is not that end's TCP speaking.
    if (Synchronized(x.state) && x.snd_known && s.seq != x.snd_max) return false;
    // Whatever the sender's reason (abort, or an answer to a segment for no connection), it has
    // no connection afterwards.
    x.state = TcpState::kClosed;
    return true;
  }
  const uint32_t seq_len = s.len + (Has(s, f::kSyn) ? 1u : 0u) + (Has(s, f::kFin) ? 1u : 0u);
  if (!x.snd_known || s.seq + seq_len > x.snd_max) {
    x.snd_max = s.seq + seq_len;
    x.snd_known = true;
  }
  if (Has(s, f::kSyn)) {
    if (!x.iss_known) {
      x.iss_known = true;
      x.iss = s.seq;
    }
    if (!Has(s, f::kAck)) {
      // RFC 9293 3.3.2: CLOSED --active OPEN / snd SYN--> SYN-SENT.
      if (x.state == TcpState::kClosed || x.state == TcpState::kListen) {
        x.state = TcpState::kSynSent;
      }
    } else if (x.state == TcpState::kListen || x.state == TcpState::kClosed ||
               x.state == TcpState::kSynSent) {
      // LISTEN --rcv SYN / snd SYN,ACK--> SYN-RECEIVED; the SYN was not seen arriving.
      x.state = TcpState::kSynReceived;
    }
  }
  if (Has(s, f::kFin) && !x.fin_sent) {
    x.fin_sent = true;
    x.fin_seq = s.seq + s.len + (Has(s, f::kSyn) ? 1u : 0u);
    // RFC 9293 3.3.2: ESTABLISHED --CLOSE / snd FIN--> FIN-WAIT-1; CLOSE-WAIT --CLOSE / snd
    // FIN--> LAST-ACK; SYN-RECEIVED --CLOSE / snd FIN--> FIN-WAIT-1.
    switch (x.state) {
      case TcpState::kEstablished:
      case TcpState::kSynReceived:
        x.state = TcpState::kFinWait1;
        break;
      case TcpState::kCloseWait:
        x.state = TcpState::kLastAck;
        break;
      default:
        break;
    }
  }
  return true;
}

Outcome Inference::Received(const SegView& s) {
  Outcome o;
  End& y = end(1 - s.from);  // the receiver
  // First, RST (RFC 9293 3.10.7.3 for SYN-SENT, 3.10.7.4 with RFC 5961 3.2 otherwise).
  if (Has(s, f::kRst)) {
    switch (y.state) {
      case TcpState::kClosed:
      case TcpState::kListen:
        break;  // nothing to reset; a listener ignores RST (3.10.7.2)
      case TcpState::kSynSent:
        if (Has(s, f::kAck) && y.iss_known && s.ack == y.iss + 1) {
          o.rst_accepted = true;
          y.state = TcpState::kClosed;
        }
        break;
      default:
        if (!y.rcv_known || s.seq == y.rcv_nxt) {
          o.rst_accepted = true;
          y.state = TcpState::kClosed;
        } else {
          o.rst_not_exact = true;
        }
        break;
    }
    return o;
  }
  // Second, SYN.
  if (Has(s, f::kSyn)) {
    if (!Has(s, f::kAck)) {
      if (y.state == TcpState::kListen || y.state == TcpState::kSynSent) {
        // LISTEN --rcv SYN--> SYN-RECEIVED; SYN-SENT --rcv SYN--> SYN-RECEIVED (simultaneous
        // open, RFC 9293 figure 8). CLOSED answers with a RST and stays (3.10.7.1).
        y.state = TcpState::kSynReceived;
        y.rcv_known = true;
        y.rcv_nxt = s.seq + 1;
      } else if (Synchronized(y.state)) {
        o.syn_in_sync = true;  // RFC 5961 4.2: a challenge ACK, no state change
      }
      return o;
    }
    if (y.state == TcpState::kSynSent || y.state == TcpState::kSynReceived) {
      // SYN-SENT --rcv SYN,ACK / snd ACK--> ESTABLISHED; in a simultaneous open the SYN-ACK
      // completes SYN-RECEIVED the same way.
      if (!y.iss_known || s.ack == y.iss + 1) {
        y.state = TcpState::kEstablished;
        y.rcv_known = true;
        y.rcv_nxt = s.seq + 1;
      }
    } else if (Synchronized(y.state)) {
      o.syn_in_sync = true;
    }
  }
  // Third, ACK.
  if (Has(s, f::kAck) && !Has(s, f::kSyn)) {
    if (y.state == TcpState::kSynReceived && (!y.iss_known || s.ack > y.iss)) {
      y.state = TcpState::kEstablished;  // SYN-RECEIVED --rcv ACK of SYN--> ESTABLISHED
    }
    if (y.fin_sent && s.ack > y.fin_seq) {
      switch (y.state) {
        case TcpState::kFinWait1:
          y.state = TcpState::kFinWait2;  // rcv ACK of FIN
          break;
        case TcpState::kClosing:
          y.state = TcpState::kTimeWait;  // rcv ACK of FIN
          break;
        case TcpState::kLastAck:
          y.state = TcpState::kClosed;  // rcv ACK of FIN
          break;
        default:
          break;
      }
    }
  }
  // The data: RCV.NXT moves over what arrives in order.
  const SeqNum data_start = s.seq + (Has(s, f::kSyn) ? 1u : 0u);
  if (!y.rcv_known && !Has(s, f::kSyn)) {
    y.rcv_known = true;
    y.rcv_nxt = data_start;
  }
  if (s.len > 0 && data_start <= y.rcv_nxt && y.rcv_nxt < data_start + s.len) {
    y.rcv_nxt = data_start + s.len;
  }
  // Fourth, FIN.
  if (Has(s, f::kFin)) {
    const SeqNum fin = data_start + s.len;
    if (y.fin_received && fin + 1 == y.rcv_nxt) {
      o.fin_again = true;  // TIME-WAIT: re-ACK and restart 2*MSL (3.10.7.4, eighth)
    } else if (y.rcv_known && fin != y.rcv_nxt) {
      o.fin_out_of_order = true;
    } else if (!y.fin_received) {
      y.fin_received = true;
      y.rcv_nxt = fin + 1;
      switch (y.state) {
        case TcpState::kEstablished:
        case TcpState::kSynReceived:
          y.state = TcpState::kCloseWait;  // rcv FIN / snd ACK
          break;
        case TcpState::kFinWait1:
          // Our FIN not yet acknowledged (the ACK step above would have moved us on).
          y.state = TcpState::kClosing;
          break;
        case TcpState::kFinWait2:
          y.state = TcpState::kTimeWait;
          break;
        default:
          break;
      }
    }
  }
  return o;
}

std::vector<SegmentMarks> MarkRepeats(std::span<const MarkView> segs) {
  namespace fl = wire::tcpflag;
  const auto has = [](uint8_t flags, uint8_t flag) { return (flags & flag) != 0; };
  const size_t n = segs.size();
  std::vector<SegmentMarks> marks(n);
  // A sender that varies its IP identification: the id tells copies from resends.
  std::array<bool, 2> ids_used{};
  {
    std::array<int32_t, 2> first_id{-1, -1};
    for (const MarkView& v : segs) {
      const auto x = static_cast<size_t>(v.seg.from & 1);
      if (v.ip_id < 0) continue;
      if (first_id[x] < 0) first_id[x] = v.ip_id;
      else if (v.ip_id != first_id[x]) ids_used[x] = true;
    }
  }
  std::array<bool, 2> have_max{};
  std::array<SeqNum, 2> snd_max;
  std::array<int, 2> dup_count{};
  std::array<int64_t, 2> last_from{-1, -1};
  for (size_t i = 0; i < n; ++i) {
    const MarkView& v = segs[i];
    const SegView& w = v.seg;
    SegmentMarks& m = marks[i];
    const auto x = static_cast<size_t>(w.from & 1);
    for (size_t j = i; j-- > 0 && i - j <= 256;) {
      const MarkView& o = segs[j];
      if (o.seg.from != w.from || o.seg.seq != w.seq || o.seg.ack != w.ack ||
          o.seg.flags != w.flags || o.seg.len != w.len || o.window != v.window) {
        continue;
      }
      const bool same_id = ids_used[x] && v.ip_id >= 0 && v.ip_id == o.ip_id;
      const bool same_ts = v.ts_val && o.ts_val && *v.ts_val == *o.ts_val && !ids_used[x];
      if (same_id || same_ts) m.duplicate = true;
      break;
    }
    const uint32_t sl =
        w.len + (has(w.flags, fl::kSyn) ? 1u : 0u) + (has(w.flags, fl::kFin) ? 1u : 0u);
    if (!m.duplicate) {
      if (has(w.flags, fl::kSyn)) {
        // A SYN-ACK after a bare SYN at the same number is a simultaneous open's answer
        // (RFC 9293 figure 8), not a retransmission; the same kind again is one.
        for (size_t j = 0; j < i; ++j) {
          const SegView& o = segs[j].seg;
          if (o.from == w.from && has(o.flags, fl::kSyn) && o.seq == w.seq &&
              has(o.flags, fl::kAck) == has(w.flags, fl::kAck)) {
            m.retransmit = true;
          }
        }
      } else if (sl > 0 && have_max[x] && w.seq < snd_max[x]) {
        m.retransmit = true;
      }
      if (v.logged_retransmit) m.retransmit = true;
    }
    if (sl > 0 && (!have_max[x] || w.seq + sl > snd_max[x])) {
      snd_max[x] = w.seq + sl;
      have_max[x] = true;
    }
    // RFC 5681 section 2: a duplicate ACK carries no data, no SYN or FIN, the same
    // acknowledgment number and window as the last, while data is outstanding.
    const bool pure_ack = w.len == 0 && has(w.flags, fl::kAck) &&
                          !has(w.flags, fl::kSyn | fl::kFin | fl::kRst);
    if (pure_ack && !m.duplicate && last_from[x] >= 0) {
      const MarkView& o = segs[static_cast<size_t>(last_from[x])];
      const size_t y = 1 - x;
      if (has(o.seg.flags, fl::kAck) && o.seg.ack == w.ack && o.window == v.window &&
          have_max[y] &&
          w.ack < snd_max[y]) {
        m.dup_ack = ++dup_count[x];
      } else {
        dup_count[x] = 0;
      }
    } else if (!pure_ack) {
      dup_count[x] = 0;
    }
    last_from[x] = static_cast<int64_t>(i);
  }
  return marks;
}

}  // namespace shake::infer
