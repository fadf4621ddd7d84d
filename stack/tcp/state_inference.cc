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

}  // namespace shake::infer
