// The sending half of Tcb: loss detection and undo, segment output, and the timers.
// The arriving half (RFC 9293 3.10.7) is in tcb.cc.
#include "stack/tcp/tcb.h"
#include "stack/tcp/tcb_internal.h"

#include <algorithm>
#include <cerrno>

namespace shake {

using wire::TcpHeader;
namespace flag = wire::tcpflag;

using namespace tcb_internal;

// ---- Loss detection (RACK, RFC 8985) and undo (RFC 2883, RFC 3522) -------------------------

void Tcb::NoteSent(Instant now, SeqNum s, size_t n) {
  if (n == 0) return;
  const SeqNum e = s + static_cast<uint32_t>(n);
  SeqNum fresh = s;  // where data never recorded before starts
  if (!tx_.empty()) {
    // Resent data (go-back-N after an ICMP MTU drop): the records it covers were sent again.
    for (uint32_t id = tx_.Find(s); id != tx_.end_id() && tx_.at(id).start < e; ++id) {
      tx_.MarkRetransmitted(id, now);
    }
    fresh = SeqMax(s, tx_.end_seq());
  }
  if (fresh < e) tx_.Append(fresh, e, now);
}

void Tcb::MarkSackedRecords(Instant now, const wire::TcpOptions& o, uint8_t first) {
  for (uint8_t i = first; i < o.sack_count; ++i) {
    const SeqNum l = o.sack[i].left;
    const SeqNum r = o.sack[i].right;
    if (!(l < r) || r > snd_max_ || (r - l) > static_cast<int32_t>(0x40000000)) continue;
    for (uint32_t id = tx_.Find(l); id != tx_.end_id(); ++id) {
      const TxRecords::Record& rec = tx_.at(id);
      if (!(rec.start < r)) break;
      if (rec.start < l || rec.end > r || (rec.flags & TxRecords::kSacked) != 0) continue;
      // For the RTT sample: the first newly SACKed segment never resent (Linux first_sackt).
      if ((rec.flags & TxRecords::kEverRetrans) == 0 && !ack_info_.sack_valid) {
        ack_info_.sack_valid = true;
        ack_info_.first_sacked = rec.xmit;
      }
      RackDelivered(now, rec);
      tx_.MarkSacked(id);
      ++ack_info_.delivered;
      ack_info_.delivered_bytes += rec.len();
    }
  }
}

void Tcb::RackDelivered(Instant now, const TxRecords::Record& r) {
  // RFC 8985 6.2 step 2 (as Linux's tcp_rack_advance): a retransmitted segment acknowledged
  // sooner than the minimum RTT was probably delivered by its original transmission; its
  // ambiguous time does not advance RACK.
  const Duration rtt = now - r.xmit;
  const bool ever_retrans = (r.flags & TxRecords::kEverRetrans) != 0;
  if (ever_retrans && has_min_rtt_ && rtt < min_rtt_) return;
  if (!ever_retrans && (!has_min_rtt_ || rtt < min_rtt_)) {
    has_min_rtt_ = true;
    min_rtt_ = rtt;
  }
  rack_.rtt = rtt;
  if (!rack_.valid || r.xmit > rack_.xmit_ts ||
      (r.xmit == rack_.xmit_ts && r.end > rack_.end_seq)) {
    rack_.valid = true;
    rack_.xmit_ts = r.xmit;
    rack_.end_seq = r.end;
  }
  // Step 3: a never-retransmitted segment delivered below the highest SACKed one was
  // reordered; how far is measured once the whole ACK is in (CheckReordering).
  if (ever_retrans) return;
  if (r.start < ack_info_.prior_fack &&
      (!ack_info_.reordered || r.start < ack_info_.reord_low)) {
    ack_info_.reordered = true;
    ack_info_.reord_low = r.start;
  }
}

void Tcb::CheckReordering() {
  // Linux tcp_check_sack_reordering: the reordering degree is the distance, in segments, from
  // the lowest segment this ACK delivered out of order to the highest SACKed byte now; it
  // raises tp->reordering (the duplicate-ACK threshold) when it exceeds it.
  if (!ack_info_.reordered) return;
  const SeqNum fack = highest_sacked();
  if (!(ack_info_.reord_low < fack)) return;
  rack_.reordering_seen = true;
  ++reord_seen_;  // Linux counts each such ACK (tp->reord_seen)
  const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  const auto metric = static_cast<uint32_t>(fack - ack_info_.reord_low);
  if (metric > static_cast<uint32_t>(reordering_) * mss) {
    reordering_ = std::min<int>(kMaxReordering, static_cast<int>((metric + mss - 1) / mss));
  }
}

Duration Tcb::RackReoWnd() const {
  // RFC 8985 6.2 step 4, in Linux's form (tcp_rack_reo_wnd): until reordering has been seen,
  // no window during recovery or once DupThresh segments are SACKed (RFC 6675's rule);
  // otherwise min_RTT/4 per step, widened by D-SACKs, never beyond SRTT.
  if (!rack_.reordering_seen) {
    if (in_recovery_) return Duration::Zero();
    if (tx_.sacked_segments() >= static_cast<uint32_t>(reordering_)) return Duration::Zero();
  }
  const Duration base = (has_min_rtt_ ? min_rtt_ : rtt_.srtt()) / 4 * rack_.reo_wnd_mult;
  const Duration wnd = rtt_.has_sample() ? Min(base, rtt_.srtt()) : base;
  // Never under a millisecond: Linux's RACK timer cannot fire sooner (TCP_TIMEOUT_MIN, in
  // jiffies), and an RTT measured as near zero must not turn every SACK into a loss.
  return Max(wnd, kMinReoWnd);
}

void Tcb::RackDetectLoss(Instant now) {
  // RFC 8985 6.2 step 5, as Linux's tcp_rack_detect_loss. The records in flight are kept in
  // transmit order, so the scan stops at the first one sent after the RACK segment. Those not
  // yet overdue arm the reordering timer for the latest of their deadlines (RFC 8985 6.3),
  // plus Linux's timer slack (tcp_rack_mark_lost: TCP_TIMEOUT_MIN).
  reo_deadline_ = Instant::Never();
  if (!rack_.valid) return;
  const Duration reo_wnd = RackReoWnd();
  Instant latest = Instant::Never();
  uint32_t id = tx_.oldest();
  while (id != TxRecords::kNil) {
    const TxRecords::Record& r = tx_.at(id);
    const uint32_t next = r.next;
    const bool sent_before = rack_.xmit_ts > r.xmit ||
                             (rack_.xmit_ts == r.xmit && rack_.end_seq > r.end);
    if (!sent_before) break;
    const Instant deadline = r.xmit + rack_.rtt + reo_wnd;
    if (deadline > now) {
      latest = latest.is_never() ? deadline : Max(latest, deadline);
    } else {
      tx_.MarkLost(id);
    }
    id = next;
  }
  if (!latest.is_never()) reo_deadline_ = latest + kTimerSlack;
}

void Tcb::ProcessDsack(const wire::SackBlock& b) {
  // RFC 8985 6.2 step 4: a D-SACK widens the reordering window, once per round trip.
  if (!rack_.dsack_round_active) {
    rack_.dsack_round_active = true;
    rack_.dsack_round = snd_max_;
    rack_.reo_wnd_mult = std::min(rack_.reo_wnd_mult + 1, kMaxReoWndMult);
    rack_.reo_wnd_persist = 16;
  }
  rack_.reordering_seen = true;
  // RFC 2883 section 4.2 / Linux tcp_check_dsack: each duplicate of one of this episode's
  // retransmissions takes one off the count; at zero every retransmission was unnecessary.
  if (!undo_valid_ || undo_retrans_ <= 0 || !(b.right > undo_marker_)) return;
  bool retransmitted = true;  // below SND.UNA the record is gone: Linux's "dumb counting"
  if (b.left >= snd_una_) {
    const uint32_t id = tx_.Find(b.left);
    retransmitted = id != tx_.end_id() && (tx_.at(id).flags & TxRecords::kEverRetrans) != 0;
  }
  if (!retransmitted) return;
  const int segs = std::max(1, static_cast<int>((static_cast<uint32_t>(b.right - b.left) +
                                                 snd_mss_ - 1u) / snd_mss_));
  undo_retrans_ = std::max(0, undo_retrans_ - segs);
  // Outside recovery the undo happens now (Linux tcp_try_undo_dsack); inside, when it ends.
  if (undo_retrans_ == 0 && !in_recovery_ && !rto_recovery_) Undo();
}

void Tcb::InitUndo() {
  // Linux tcp_init_undo: remember the window to restore if the episode proves spurious.
  undo_valid_ = true;
  undo_marker_ = snd_una_;
  undo_retrans_ = -1;
  retrans_stamp_set_ = false;
  prior_cwnd_ = cwnd_;
  prior_ssthresh_ = std::max(ssthresh_, cwnd_ / 2 + cwnd_ / 4);  // tcp_current_ssthresh
  prior_cc_ = cc_.Save();
  max_dupacks_ = dupacks_;
}

bool Tcb::PacketDelayed(const TcpHeader& h) const {
  // RFC 3522 section 2 (Linux tcp_packet_delayed): the echoed timestamp predates the first
  // retransmission.
  return ts_ok_ && retrans_stamp_set_ && h.options.timestamp && h.options.timestamp->ecr != 0 &&
         static_cast<int32_t>(h.options.timestamp->ecr - retrans_stamp_) < 0;
}

void Tcb::Undo() {
  // Linux tcp_undo_cwnd_reduction: restore the window and slow-start threshold.
  undo_valid_ = false;
  cwnd_ = std::max(cwnd_, prior_cwnd_);
  ssthresh_ = std::max(ssthresh_, prior_ssthresh_);
  cc_.Restore(prior_cc_);  // RFC 9438 4.9
  rack_.reordering_seen = true;
  if (!sack_ok_) {
    // Without SACK the only measure of reordering is the duplicate ACKs it caused (Linux
    // tcp_update_reordering from the undo path).
    reordering_ = std::min(kMaxReordering, std::max(reordering_, max_dupacks_ + 1));
  }
  if (in_recovery_ || rto_recovery_) {
    in_recovery_ = false;
    rto_recovery_ = false;
    fin_rexmit_pending_ = false;
    dupacks_ = 0;
    if (sack_ok_) tx_.UnmarkLost();  // RACK marks again whatever is really missing
    if (snd_nxt_ < snd_max_) snd_nxt_ = snd_max_;  // stop going back N
  }
}

// ---- Congestion control (RFC 5681, RFC 9438) ------------------------------------------------

uint32_t Tcb::CongestionEvent(bool timeout) {
  return cc_.OnCongestionEvent(cwnd_, snd_mss_, timeout);
}

void Tcb::GrowWindow(Instant now, uint32_t acked) {
  // RFC 7661 / Linux tcp_is_cwnd_limited: an application-limited sender does not grow cwnd.
  // In slow start cwnd may still grow to twice the most segments recently in flight.
  const uint64_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  const bool slow_start = cwnd_ < ssthresh_;
  const bool limited = is_cwnd_limited_ ||
                       (slow_start && cwnd_ / mss < 2 * uint64_t{max_packets_out_});
  if (!limited) return;
  cc_.OnAck(now, acked, snd_mss_, ssthresh_, rtt_.srtt(), &cwnd_);
}

void Tcb::ValidateCwnd(bool cwnd_limited) {
  // Linux tcp_cwnd_validate: remember the most segments in flight over the last window of
  // data (until SND.UNA passes the SND.NXT recorded then) and whether cwnd was the limit.
  const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  const auto packets_out = static_cast<uint32_t>((FlightSize() + mss - 1) / mss);
  if (!(snd_una_ < cwnd_usage_seq_) || cwnd_limited || packets_out > max_packets_out_) {
    max_packets_out_ = packets_out;
    cwnd_usage_seq_ = snd_nxt_;
    is_cwnd_limited_ = cwnd_limited;
  }
}

// ---- Tail loss probes (RFC 8985 section 7) --------------------------------------------------

bool Tcb::LossProbeAllowed() const {
  // RFC 8985 7.2: a probe timer runs while data is outstanding on a SACK connection, except in
  // fast recovery or RTO recovery, once segments are SACKed (RACK's reordering timer covers
  // those), and while an earlier probe awaits its acknowledgment (one probe per episode).
  if (!host_.tcp_config().tail_loss_probe || !sack_ok_ || !IsSynchronized(state_) ||
      state_ == TcpState::kTimeWait) {
    return false;
  }
  if (!(snd_una_ < snd_max_) || in_recovery_ || rto_recovery_ || tlp_active_) return false;
  return tx_.sacked_segments() == 0 && rto_kind_ == RtoKind::kRetransmit;
}

void Tcb::ScheduleLossProbe(Instant now) {
  tlp_deadline_ = Instant::Never();
  if (!LossProbeAllowed()) return;
  // RFC 8985 7.2 in Linux's form (tcp_schedule_loss_probe): PTO = 2 * SRTT, plus the
  // worst-case delayed ACK (rto_min) when a single segment is in flight, whose ACK may be
  // delayed, else plus the timer's 2 ms granularity; 1 s without an RTT sample. Never later
  // than the RTO would fire: then the probe takes the timeout's place.
  Duration pto = Duration::Seconds(1);
  if (rtt_.has_sample()) {
    pto = rtt_.srtt() * 2 + (PacketsOut() == 1 ? host_.tcp_config().rto_min : kTimerSlack);
  }
  if (rto_deadline_ > now) pto = Min(pto, rto_deadline_ - now);
  tlp_deadline_ = now + pto;
}

void Tcb::LossProbeTimeout(Instant now, FrameSink& out) {
  if (!host_.tcp_config().tail_loss_probe || !sack_ok_ || !IsSynchronized(state_) ||
      state_ == TcpState::kTimeWait || !(snd_una_ < snd_max_) || in_recovery_ ||
      rto_recovery_ || tlp_active_ || rto_kind_ != RtoKind::kRetransmit) {
    return;
  }
  // RFC 8985 7.3: send one segment of new data if there is any and the peer's window allows it
  // (the probe is not held back by cwnd), otherwise retransmit the last segment sent.
  const SeqNum wnd_end = snd_una_ + snd_wnd_;
  const bool fin_sent = fin_queued_ && snd_max_ > data_end();
  bool sent = false;
  bool retrans = false;
  SeqNum start = snd_max_;
  if (snd_nxt_ == snd_max_ && snd_max_ < data_end() && snd_max_ < wnd_end && !fin_sent) {
    const size_t n = std::min<size_t>({static_cast<size_t>(RecordEnd(snd_max_) - snd_max_),
                                       static_cast<size_t>(wnd_end - snd_max_), snd_mss_});
    const bool all_rest = snd_max_ + static_cast<uint32_t>(n) == data_end();
    uint8_t flags = flag::kAck;
    if (all_rest) flags |= flag::kPsh;
    if (all_rest && fin_queued_) flags |= flag::kFin;
    if (SendSegment(now, flags, snd_max_, n, false, out)) {
      NoteSent(now, snd_max_, n);
      if (n < snd_mss_) snd_sml_ = snd_max_ + static_cast<uint32_t>(n);
      snd_max_ = snd_max_ + static_cast<uint32_t>(n) + ((flags & flag::kFin) ? 1u : 0u);
      snd_nxt_ = snd_max_;
      sent = true;
    }
  } else if (!tx_.empty()) {
    const uint32_t last = tx_.end_id() - 1;
    start = tx_.at(last).start;
    // Resends our FIN with it when the FIN went out after this segment.
    sent = RetransmitRecord(now, last, out);
    retrans = true;
  } else if (fin_sent && !fin_acked()) {
    start = data_end();
    sent = SendSegment(now, flag::kAck | flag::kFin, data_end(), 0, true, out);
    retrans = true;
  }
  if (!sent) {
    ScheduleLossProbe(now);  // the device had no room: try again after another PTO
    return;
  }
  host_.counters().tcp_loss_probes++;
  tlp_active_ = true;
  tlp_is_retrans_ = retrans;
  tlp_start_ = start;
  tlp_end_ = snd_max_;
  // RFC 8985 7.3: after the probe the RTO runs from now, not another PTO (Linux
  // tcp_send_loss_probe).
  rto_kind_ = RtoKind::kRetransmit;
  rto_deadline_ = now + rtt_.rto();
}

uint32_t Tcb::PacketsOut() const {
  const uint32_t records = tx_.end_id() - tx_.first_id();
  const bool fin_out = fin_queued_ && snd_max_ > data_end() && !fin_acked();
  return records != 0 ? records : (fin_out ? 1u : 0u);
}


void Tcb::ProcessLossProbeAck(const TcpHeader& h, bool advances, bool dup,
                              const wire::SackBlock* dsack) {
  // RFC 8985 7.4, in Linux's form (tcp_process_tlp_ack): did the probe repair a loss?
  if (h.ack < tlp_end_ && dsack == nullptr) return;
  if (!tlp_is_retrans_) {
    // A probe of new data: its ACK or SACK drives RACK, which finds any loss before it.
    if (h.ack >= tlp_end_) tlp_active_ = false;
    return;
  }
  if (dsack != nullptr && dsack->left < tlp_end_ && dsack->right > tlp_start_) {
    // 7.4.1: a D-SACK for the probe: both the original and the probe arrived, nothing was lost.
    tlp_active_ = false;
    return;
  }
  if (h.ack > tlp_end_) {
    // 7.4.2: the ACK covers the probe and no D-SACK reported a duplicate: the probe repaired a
    // lost segment, so the window is reduced as fast recovery would have (RFC 5681 3.2 /
    // RFC 9438 4.6), without retransmitting anything.
    tlp_active_ = false;
    host_.counters().tcp_loss_probe_recoveries++;
    ssthresh_ = CongestionEvent(false);
    cwnd_ = std::min(cwnd_, ssthresh_);
    return;
  }
  if (h.ack == tlp_end_ && dup && !advances) {
    // A duplicate ACK at the probe's end without SACK news: the probe was a duplicate too.
    tlp_active_ = false;
  }
}

// ---- Output -------------------------------------------------------------------------------

uint16_t Tcb::AdvertisedWindow(bool syn) {
  const size_t cap = recv_capacity();
  const size_t free_space = cap > recv_.readable() ? cap - recv_.readable() : 0;
  const SeqNum rcv_nxt = recv_.rcv_nxt();
  if (syn) {
    // RFC 7323 2.2: the window in a SYN or SYN-ACK is never scaled.
    const auto field = static_cast<uint16_t>(std::min<size_t>(free_space, 65535));
    if (rcv_nxt + field > rcv_adv_) rcv_adv_ = rcv_nxt + field;
    return field;
  }
  size_t wnd = std::min<size_t>(free_space, size_t{65535} << rcv_wscale_);
  // Under memory pressure the window stops growing: as Linux clamps rcv_ssthresh to four
  // advertised MSS (tcp_adjust_rcv_ssthresh), no more than that is offered beyond what was.
  if (host_.memory().under_pressure()) wnd = std::min<size_t>(wnd, 4 * size_t{local_mss});
  // Never shrink the window we already offered (RFC 9293 3.8.6.2.2).
  const size_t offered = rcv_adv_ > rcv_nxt ? static_cast<size_t>(rcv_adv_ - rcv_nxt) : 0;
  if (wnd < offered) {
    wnd = offered;
  } else if (wnd - offered < std::min<size_t>(cap / 2, rcv_mss_) && offered != 0) {
    wnd = offered;  // receiver SWS avoidance: do not announce a small increase
  }
  auto field = static_cast<uint16_t>(std::min<size_t>(wnd >> rcv_wscale_, 65535));
  const SeqNum edge = rcv_nxt + (static_cast<uint32_t>(field) << rcv_wscale_);
  if (edge > rcv_adv_) rcv_adv_ = edge;
  return field;
}

wire::TcpOptions Tcb::OptionsFor(Instant now, uint8_t flags) {
  wire::TcpOptions o;
  const bool syn = (flags & flag::kSyn) != 0;
  if (syn) {
    const bool syn_ack = (flags & flag::kAck) != 0;
    o.mss = options.max_segment != 0 ? std::min(local_mss, options.max_segment) : local_mss;
    // A SYN offers what we want; a SYN-ACK echoes only what the peer offered (RFC 7323, 2018).
    if (syn_ack ? ws_ok_ : want_ws_) o.window_scale = rcv_wscale_;
    o.sack_permitted = syn_ack ? sack_ok_ : want_sack_;
    if (syn_ack ? ts_ok_ : want_ts_) {
      o.timestamp = wire::TcpTimestamp{host_.TimestampClock(now) + ts_offset_,
                                       syn_ack ? ts_recent_ : 0};
    }
    return o;
  }
  if (ts_ok_) o.timestamp = wire::TcpTimestamp{host_.TimestampClock(now) + ts_offset_, ts_recent_};
  if (!sack_ok_ || (flags & flag::kRst) != 0) return o;
  const size_t room = ts_ok_ ? 3 : 4;
  size_t n = 0;
  if (dsack_pending_) {
    // RFC 2883: the duplicate range goes first.
    o.sack[n++] = dsack_;
    dsack_pending_ = false;
  }
  n += recv_.SackBlocks(std::span(o.sack).subspan(n, room - n));
  if (ooo_fin_ && !fin_received_) {
    // A FIN held beyond a hole is SACKed with the data next to it, as Linux does.
    bool merged = false;
    for (size_t i = 0; i < n; ++i) {
      if (o.sack[i].right == ooo_fin_seq_) {
        o.sack[i].right = ooo_fin_seq_ + 1;
        merged = true;
      }
    }
    if (!merged && n < room) {
      std::copy_backward(o.sack.begin(), o.sack.begin() + static_cast<std::ptrdiff_t>(n),
                         o.sack.begin() + static_cast<std::ptrdiff_t>(n + 1));
      o.sack[0] = {ooo_fin_seq_, ooo_fin_seq_ + 1};
      ++n;
    }
  }
  o.sack_count = static_cast<uint8_t>(n);
  return o;
}

bool Tcb::SendSegment(Instant now, uint8_t flags, SeqNum seq, size_t len, bool retransmit,
                      FrameSink& out) {
  // RFC 3168 6.1.2 and 6.1.4 as Linux's tcp_ecn_send: new data is ECT(0) and carries a queued
  // CWR; ACKs, retransmissions and probes are not ECN-capable (6.1.5, 6.1.6); every segment
  // echoes ECE while a CE mark awaits the sender's CWR.
  tx_ecn_ = 0;
  if (ecn_ok_ && (flags & flag::kSyn) == 0 && (flags & flag::kRst) == 0) {
    if (len != 0 && !retransmit) {
      tx_ecn_ = 2;  // ECT(0)
      if (ecn_queue_cwr_) {
        flags |= flag::kCwr;
        ecn_queue_cwr_ = false;
      }
    }
    if (ecn_demand_cwr_) flags |= flag::kEce;
  }
  TcpHeader h;
  h.src_port = tuple.local.port;
  h.dst_port = tuple.remote.port;
  h.seq = seq;
  h.flags = flags;
  const bool syn = (flags & flag::kSyn) != 0;
  if ((flags & flag::kAck) != 0) h.ack = recv_.rcv_nxt();
  h.window = AdvertisedWindow(syn);
  h.options = OptionsFor(now, flags);
  size_t offset = 0;
  if (len != 0) offset = static_cast<size_t>(seq - snd_una_);
  if (!host_.Transmit(now, *this, h, offset, len, retransmit, out)) return false;
  // RFC 6937: PRR counts what recovery sends (Linux prr_out).
  if ((in_recovery_ || cwr_) && !rto_recovery_ && (len != 0 || (flags & flag::kFin) != 0)) {
    ++prr_out_;
  }
  // Linux enters interactive mode when it answers received data within the ACK timeout.
  if (len != 0 && !retransmit && now - last_data_received_ < host_.tcp_config().delayed_ack) {
    pingpong_ = true;
  }
  if ((flags & flag::kAck) != 0) {
    last_ack_sent_ = h.ack;
    ack_now_ = false;
    unacked_segments_ = 0;
    delack_deadline_ = Instant::Never();
  }
  if (retransmit) {
    ++retransmits_;
    host_.counters().tcp_retransmits++;
    if (undo_valid_ && len != 0) {
      // Linux tcp_retransmit_skb: count the episode's retransmissions and stamp the first.
      undo_retrans_ = std::max(undo_retrans_, 0) + 1;
      if (!retrans_stamp_set_ && h.options.timestamp) {
        retrans_stamp_set_ = true;
        retrans_stamp_ = h.options.timestamp->val;
      }
    }
  }
  return true;
}

void Tcb::SendAck(Instant now, FrameSink& out) {
  // SND.MAX, not SND.NXT: after a timeout SND.NXT falls back, but the peer has seen more, and
  // an ACK below its RCV.NXT would be out of window (Linux's tcp_acceptable_seq does the same).
  SendSegment(now, flag::kAck, snd_max_, 0, false, out);
}

void Tcb::SendChallengeAck(Instant now, FrameSink& out, bool rfc5961) {
  // RFC 5961 7: rate-limited. Linux limits per socket to one per tcp_invalid_ratelimit.
  if (oow_ack_sent_ && now - last_oow_ack_ < host_.tcp_config().challenge_ack_interval) {
    host_.counters().tcp_challenge_acks_limited++;
    return;
  }
  oow_ack_sent_ = true;
  last_oow_ack_ = now;
  host_.counters().tcp_challenge_acks++;
  sending_challenge_ack_ = rfc5961;  // the host marks the segment (TraceEvent::challenge_ack)
  SendAck(now, out);
  sending_challenge_ack_ = false;
}

void Tcb::SendProbe(Instant now, FrameSink& out) {
  // Linux's zero-window and keepalive probe: an ACK carrying SND.UNA - 1 and no data.
  SendSegment(now, flag::kAck, snd_una_ - 1, 0, false, out);
}

SeqNum Tcb::RecordEnd(SeqNum s) const {
  // The first MSG_EOR boundary after `s` (they are few and sorted), else the end of the data.
  if (eor_head_ == eor_.size()) return data_end();
  auto it = std::upper_bound(eor_.begin() + static_cast<std::ptrdiff_t>(eor_head_), eor_.end(), s,
                             [](SeqNum a, SeqNum b) { return a < b; });
  return it == eor_.end() ? data_end() : SeqMin(*it, data_end());
}

bool Tcb::WriteWakeup(Instant now, FrameSink& out) {
  const SeqNum wnd_end = snd_una_ + snd_wnd_;
  if (!(snd_max_ < wnd_end) || !(snd_max_ < data_end())) return false;
  const size_t n = std::min<size_t>({static_cast<size_t>(RecordEnd(snd_max_) - snd_max_),
                                     static_cast<size_t>(wnd_end - snd_max_), snd_mss_});
  const bool all_rest = snd_max_ + static_cast<uint32_t>(n) == data_end();
  uint8_t flags = flag::kAck | flag::kPsh;
  if (all_rest && fin_queued_) flags |= flag::kFin;
  if (!SendSegment(now, flags, snd_max_, n, false, out)) return false;
  NoteSent(now, snd_max_, n);
  if (n < snd_mss_) snd_sml_ = snd_max_ + static_cast<uint32_t>(n);
  snd_max_ = snd_max_ + static_cast<uint32_t>(n) + ((flags & flag::kFin) ? 1u : 0u);
  snd_nxt_ = snd_max_;
  last_data_sent_ = now;
  data_sent_once_ = true;
  ArmRetransmit(now);
  ScheduleLossProbe(now);
  return true;
}

void Tcb::ArmRetransmit(Instant now) {
  if (rto_kind_ != RtoKind::kRetransmit) {
    rto_kind_ = RtoKind::kRetransmit;
    rto_deadline_ = now + rtt_.rto();
  }
}

bool Tcb::RetransmitRecord(Instant now, uint32_t id, FrameSink& out) {
  const TxRecords::Record r = tx_.at(id);
  const SeqNum end = SeqMin(r.end, data_end());
  bool ok = false;
  for (SeqNum s = r.start; s < end;) {
    const size_t n = std::min<size_t>(static_cast<size_t>(SeqMin(end, RecordEnd(s)) - s), snd_mss_);
    const bool last = s + static_cast<uint32_t>(n) == data_end();
    uint8_t flags = flag::kAck;
    if (last) flags |= flag::kPsh;
    // Our FIN rides with the last data again, as it did the first time.
    const bool fin = last && fin_queued_ && snd_max_ > data_end();
    if (fin) flags |= flag::kFin;
    if (!SendSegment(now, flags, s, n, true, out)) break;
    if (fin) fin_rexmit_pending_ = false;
    ok = true;
    s = s + static_cast<uint32_t>(n);
  }
  if (ok) tx_.MarkRetransmitted(id, now);
  return ok;
}

bool Tcb::SendSackRecovery(Instant now, FrameSink& out) {
  // RFC 6675 (5): while pipe < cwnd, send NextSeg(): first a segment marked lost (here by RACK,
  // RFC 8985, rather than by IsLost), else new data. pipe is computed as Linux's
  // tcp_packets_in_flight, in bytes: FlightSize - SACKed - lost + retransmitted.
  bool sent = false;
  for (int guard = 0; guard < 1024; ++guard) {
    const int64_t pipe = static_cast<int64_t>(FlightSize()) - tx_.sacked_bytes() -
                         tx_.lost_bytes() + tx_.retrans_bytes();
    // RFC 6675 (5) step 4.3: entering recovery retransmits the first lost segment whatever
    // pipe says; afterwards pipe rules.
    if (pipe >= static_cast<int64_t>(cwnd_) && !(force_rexmit_ && tx_.lost_bytes() != 0)) break;
    force_rexmit_ = false;
    // NextSeg (1): the lowest lost segment not yet retransmitted.
    if (const uint32_t id = tx_.NextLost(); id != TxRecords::kNil) {
      if (!RetransmitRecord(now, id, out)) break;
      sent = true;
      continue;
    }
    // NextSeg (2): new data, limited by the peer's window.
    const SeqNum wnd_end = snd_una_ + snd_wnd_;
    if (snd_max_ < data_end() && snd_max_ < wnd_end && !(fin_queued_ && snd_max_ > data_end())) {
      const size_t n = std::min<size_t>({static_cast<size_t>(RecordEnd(snd_max_) - snd_max_),
                                         static_cast<size_t>(wnd_end - snd_max_), snd_mss_});
      if (!SendSegment(now, flag::kAck | flag::kPsh, snd_max_, n, false, out)) break;
      NoteSent(now, snd_max_, n);
      snd_max_ = snd_max_ + static_cast<uint32_t>(n);
      snd_nxt_ = snd_max_;
      sent = true;
      continue;
    }
    // After a timeout, a FIN that no retransmitted segment carried goes again on its own.
    if (fin_rexmit_pending_ && fin_queued_ && !fin_acked() && snd_max_ > data_end()) {
      if (SendSegment(now, flag::kAck | flag::kFin, data_end(), 0, true, out)) {
        fin_rexmit_pending_ = false;
        sent = true;
      }
    }
    break;
  }
  return sent;
}

bool Tcb::SendData(Instant now, FrameSink& out) {
  bool sent = false;
  if (chrono_busy_due_) {
    chrono_busy_due_ = false;
    if (data_end() > snd_max_) ChronoStart(now, kChronoBusy);
  }
  if (chrono_sndbuf_due_) {
    chrono_sndbuf_due_ = false;
    ChronoStart(now, kChronoSndbuf);
  }
  const bool had_unsent = data_end() > snd_max_;
  bool rwnd_limited = false;
  if (in_recovery_ && sack_ok_) {
    sent = SendSackRecovery(now, out);
    if (sent) ArmRetransmit(now);
    return sent;
  }
  if (in_recovery_ && !sack_ok_ && snd_nxt_ == snd_una_ && snd_una_ < snd_max_) {
    // NewReno: retransmit one segment from SND.UNA, then carry on with new data.
    const size_t n = std::min<size_t>(snd_mss_, static_cast<size_t>(RecordEnd(snd_una_) - snd_una_));
    if (n != 0 && SendSegment(now, flag::kAck, snd_una_, n, true, out)) {
      NoteSent(now, snd_una_, n);
      sent = true;
    }
    snd_nxt_ = snd_max_;
  }
  // RFC 5681 4.1, as Linux's tcp_cwnd_restart: nothing in flight and no data sent for more
  // than an RTO; cwnd halves per RTO idle, not below the initial window (nor above cwnd), and
  // ssthresh keeps at least three quarters of the old cwnd (tcp_current_ssthresh).
  if (host_.tcp_config().slow_start_after_idle && snd_una_ == snd_max_ && snd_nxt_ < data_end() &&
      data_sent_once_ && now - last_data_sent_ > rtt_.rto()) {
    const uint32_t initial = std::min<uint32_t>(10u * snd_mss_, std::max<uint32_t>(2u * snd_mss_, 14600));
    const uint32_t restart = std::min(initial, cwnd_);
    if (!in_recovery_) ssthresh_ = std::max(ssthresh_, (cwnd_ >> 1) + (cwnd_ >> 2));
    uint32_t cwnd = cwnd_;
    Duration delta = now - last_data_sent_;
    const Duration rto = rtt_.rto();
    while ((delta = delta - rto) > Duration::Zero() && cwnd > restart) cwnd >>= 1;
    cwnd_ = std::max(cwnd, restart);
    cc_.OnRestart();
  }
  const SeqNum max_before = snd_max_;
  bool cwnd_limited = false;
  for (int guard = 0; guard < 4096; ++guard) {
    const SeqNum end = data_end();
    // Outside recovery, SACKed segments (without SACK: duplicate-ACKed ones, as Linux counts
    // them in sacked_out) have left the network and free room in cwnd, as Linux's
    // tcp_packets_in_flight counts. RFC 3042 limited transmit is the result: each early
    // duplicate ACK lets one new segment out.
    uint32_t credit = 0;
    if (!in_recovery_ && !rto_recovery_) {
      credit = sack_ok_ ? sacked_bytes()
                        : std::min<uint32_t>(static_cast<uint32_t>(dupacks_) * snd_mss_,
                                             static_cast<uint32_t>(FlightSize()));
    }
    // Linux counts cwnd in whole segments: a fraction of one that congestion avoidance has
    // grown lets nothing out (never a piece of a segment).
    const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
    const uint64_t cwnd_whole = uint64_t{cwnd_ / mss} * mss;
    const uint32_t usable_window =
        std::min<uint32_t>(snd_wnd_, static_cast<uint32_t>(std::min<uint64_t>(cwnd_whole + credit, 0xffffffffu)));
    const SeqNum wnd_end = snd_una_ + usable_window;
    if (snd_nxt_ < end) {
      // Skip what the peer already SACKed when resending after a timeout.
      SeqNum s = snd_nxt_, e = end;
      if (snd_nxt_ < snd_max_ && scoreboard_len_ != 0) {
        if (!NextHole(snd_nxt_, SeqMin(end, snd_max_), &s, &e)) {
          s = SeqMin(end, snd_max_);
          e = end;
        }
        if (!(s < e)) {
          snd_nxt_ = SeqMin(end, snd_max_);
          if (!(snd_nxt_ < end)) continue;
          s = snd_nxt_;
          e = end;
        }
      }
      // Linux tcp_snd_wnd_test: new data goes out only when its next segment (a full MSS, or
      // all there is up to the end of the data or record) fits in the peer's window; a window
      // too small for it is not filled with a smaller piece (RFC 9293 3.8.6.2.1, the sender's
      // silly window avoidance; the persist timer probes it). Counted as rwnd-limited when
      // cwnd would have let the segment out.
      if (!(s < snd_max_)) {
        const size_t want = std::min<size_t>(static_cast<size_t>(SeqMin(e, RecordEnd(s)) - s), snd_mss_);
        const uint64_t cwnd_room = std::min<uint64_t>(cwnd_whole + credit, 0xffffffffu);
        if (static_cast<uint64_t>(s - snd_una_) < cwnd_room &&
            s + static_cast<uint32_t>(want) > snd_una_ + snd_wnd_) {
          rwnd_limited = true;
          break;
        }
      }
      if (!(s < wnd_end)) {
        cwnd_limited = cwnd_ <= snd_wnd_;
        break;
      }
      // A segment never crosses the end of a record written with MSG_EOR (Linux: the skb is
      // not appended to); the one cut there is complete, and Nagle or cork do not hold it.
      const SeqNum record_end = RecordEnd(s);
      size_t n = std::min<size_t>({static_cast<size_t>(SeqMin(e, record_end) - s),
                                   static_cast<size_t>(wnd_end - s), snd_mss_});
      const bool all_rest = s + static_cast<uint32_t>(n) == end;
      const bool record_done = s + static_cast<uint32_t>(n) == record_end && !all_rest;
      // Nagle (RFC 1122 4.2.3.4) in Minshall's form, as Linux: a small segment waits while an
      // earlier small segment is unacknowledged. TCP_CORK and MSG_MORE hold it regardless
      // (MSG_MORE even with TCP_NODELAY); a push (TCP_NAGLE_PUSH) or a FIN releases it.
      if (n < snd_mss_ && !(s < snd_max_) && !record_done) {
        const bool fin_now = fin_queued_ && all_rest;
        if ((options.cork || more_hold_) && !fin_now && !push_once_) break;
        if (!options.no_delay && !more_hold_ && snd_sml_ > snd_una_ && !fin_now && !push_once_)
          break;
      }
      const bool retransmit = s < snd_max_;
      uint8_t flags = flag::kAck;
      if (all_rest) flags |= flag::kPsh;
      if (fin_queued_ && all_rest) flags |= flag::kFin;
      if (!SendSegment(now, flags, s, n, retransmit, out)) break;
      NoteSent(now, s, n);
      sent = true;
      last_data_sent_ = now;
      data_sent_once_ = true;
      if (n < snd_mss_) snd_sml_ = s + static_cast<uint32_t>(n);
      snd_nxt_ = s + static_cast<uint32_t>(n) + ((flags & flag::kFin) ? 1u : 0u);
      snd_max_ = SeqMax(snd_max_, snd_nxt_);
      ArmRetransmit(now);
      continue;
    }
    if (fin_queued_ && snd_nxt_ == end && !fin_acked()) {
      // FIN alone: needs no window.
      const bool retransmit = snd_nxt_ < snd_max_;
      if (!SendSegment(now, flag::kAck | flag::kFin, snd_nxt_, 0, retransmit, out)) break;
      sent = true;
      snd_nxt_ = end + 1;
      snd_max_ = SeqMax(snd_max_, snd_nxt_);
      ArmRetransmit(now);
    }
    break;
  }
  if (sent || cwnd_limited) ValidateCwnd(cwnd_limited || FlightSize() >= cwnd_);
  // Linux tcp_write_xmit, with data waiting: the peer's window held it back, or no longer.
  if (rwnd_limited) {
    ChronoStart(now, kChronoRwnd);
  } else if (had_unsent) {
    ChronoStop(now, kChronoRwnd);
  }
  // RFC 8985 7.2: sending new data (re)starts the probe timer.
  if (snd_max_ != max_before) ScheduleLossProbe(now);
  // Persist: data waits with nothing in flight, because the window is shut (RFC 9293
  // 3.8.6.1) or because cork or MSG_MORE hold it: Linux's probe timer (tcp_check_probe_timer)
  // then probes the window or, when it is open, sends the data held (at most an RTO later:
  // what bounds TCP_CORK's and MSG_MORE's delay).
  if (data_end() > snd_max_ && snd_max_ == snd_una_ && rto_kind_ != RtoKind::kPersist) {
    rto_kind_ = RtoKind::kPersist;
    rto_deadline_ = now + rtt_.rto();
  }
  return sent;
}

Duration Tcb::FinWait2Timeout() const {
  return options.linger2 > Duration::Zero() ? options.linger2
                                            : host_.tcp_config().fin_wait2_timeout;
}

void Tcb::Orphaned(Instant now) {
  // Data held out of order can no longer be read: any byte past RCV.NXT now draws a reset
  // (ProcessData), so its memory goes back to the stack at once.
  recv_.Clear();
  if (state_ == TcpState::kFinWait2 && state_deadline_.is_never()) {
    state_deadline_ = now + FinWait2Timeout();
  }
}

void Tcb::Output(Instant now, FrameSink& out) {
  if (abort_pending_) {
    abort_pending_ = false;
    Abort(now, &out, 0);
    return;
  }
  switch (state_) {
    case TcpState::kClosed:
    case TcpState::kListen:
    case TcpState::kTimeWait:
      if (state_ == TcpState::kTimeWait && ack_now_) SendAck(now, out);
      return;
    case TcpState::kSynSent:
      if (send_syn_) {
        send_syn_ = false;
        const bool retransmit = retries_ != 0;
        // RFC 3168 6.1.1: an ECN-setup SYN has ECE and CWR; a retransmitted SYN does not
        // ask again (Linux tcp_ecn_clear_syn, tcp_ecn_fallback).
        syn_asked_ecn_ = host_.tcp_config().ecn == EcnMode::kOn && !retransmit;
        const uint8_t ecn_setup = syn_asked_ecn_ ? flag::kEce | flag::kCwr : 0;
        if (SendSegment(now, flag::kSyn | ecn_setup, iss_, 0, retransmit, out)) {
          if (!retransmit) {
            rtt_start_ = now;
            host_.counters().tcp_active_opens++;
          }
          snd_nxt_ = iss_ + 1;
          snd_max_ = snd_nxt_;
          rto_kind_ = RtoKind::kRetransmit;
          rto_deadline_ = now + rtt_.rto();
        }
      }
      return;
    case TcpState::kSynReceived:
      if (send_syn_) {
        send_syn_ = false;
        const bool retransmit = retries_ != 0;
        const uint8_t ecn_setup = ecn_ok_ ? flag::kEce : 0;  // RFC 3168 6.1.1
        if (SendSegment(now, flag::kSyn | flag::kAck | ecn_setup, iss_, 0, retransmit, out)) {
          if (!retransmit) rtt_start_ = now;
          snd_nxt_ = iss_ + 1;
          snd_max_ = snd_nxt_;
          rto_kind_ = RtoKind::kRetransmit;
          rto_deadline_ = now + rtt_.rto();
        }
      }
      return;
    default:
      break;
  }
  if (!SendData(now, out) && ack_now_) SendAck(now, out);
  if (ack_now_) SendAck(now, out);
  more_hold_ = false;  // MSG_MORE held this output only
  // Keepalive (RFC 1122 4.2.3.6) restarts from the last segment received.
  if (options.keepalive && keepalive_deadline_.is_never() && IsSynchronized(state_)) {
    const Duration idle = options.keepalive_time != Duration::Zero()
                              ? options.keepalive_time
                              : host_.tcp_config().keepalive_time;
    keepalive_deadline_ = last_received_ + idle;
  }
}

// ---- Timers -------------------------------------------------------------------------------

Instant Tcb::NextDeadline() const {
  Instant t = Min(Min(rto_deadline_, reo_deadline_), delack_deadline_);
  t = Min(t, tlp_deadline_);
  t = Min(t, keepalive_deadline_);
  return Min(t, state_deadline_);
}

void Tcb::OnTimer(Instant now, FrameSink& out) {
  if (state_deadline_ <= now) {
    state_deadline_ = Instant::Never();
    if (state_ == TcpState::kTimeWait || (state_ == TcpState::kFinWait2 && orphan())) {
      done_ = true;
      SetState(now, TcpState::kClosed);
      return;
    }
  }
  if (delack_deadline_ <= now) {
    delack_deadline_ = Instant::Never();
    // Linux: a delayed ACK that had to fire ends interactive mode.
    pingpong_ = false;
    if (IsSynchronized(state_)) SendAck(now, out);
  }
  if (reo_deadline_ <= now) {
    // RFC 8985 6.3: the reordering window has passed for a segment sent before a delivered one.
    reo_deadline_ = Instant::Never();
    if (sack_ok_ && IsSynchronized(state_) && state_ != TcpState::kTimeWait &&
        snd_una_ < snd_max_) {
      RackDetectLoss(now);
      if (tx_.lost_bytes() != 0) {
        if (!in_recovery_) {
          // Linux tcp_rack_reo_timeout: recovery begins with PRR counting one delivery.
          EnterRecovery(now);
          CwndReduction(1, 0, false);
        }
        Output(now, out);
      }
    }
  }
  if (tlp_deadline_ <= now) {
    // RFC 8985 7.3: the probe timeout fires ahead of the RTO.
    tlp_deadline_ = Instant::Never();
    LossProbeTimeout(now, out);
  }
  if (rto_deadline_ <= now) {
    rto_deadline_ = Instant::Never();
    RetransmitTimeout(now, out);
    if (done_) return;
  }
  if (keepalive_deadline_ <= now) {
    keepalive_deadline_ = Instant::Never();
    if (options.keepalive && IsSynchronized(state_) && state_ != TcpState::kTimeWait) {
      const TcpConfig& c = host_.tcp_config();
      const Duration idle = options.keepalive_time != Duration::Zero() ? options.keepalive_time
                                                                       : c.keepalive_time;
      const Duration interval = options.keepalive_interval != Duration::Zero()
                                    ? options.keepalive_interval
                                    : c.keepalive_interval;
      const int max_probes =
          options.keepalive_probes != 0 ? options.keepalive_probes : c.keepalive_probes;
      if (now - last_received_ < idle) {
        probes_ = 0;
        keepalive_deadline_ = last_received_ + idle;
      } else if (probes_ >= max_probes) {
        // Linux resets the connection when keepalive gives up.
        host_.counters().tcp_timeouts++;
        Abort(now, &out, soft_error_ != 0 ? soft_error_ : ETIMEDOUT);
        return;
      } else if (snd_una_ == snd_max_) {
        ++probes_;
        host_.counters().tcp_keepalive_probes++;
        SendProbe(now, out);
        keepalive_deadline_ = now + interval;
      } else {
        keepalive_deadline_ = now + interval;  // data in flight: the RTO covers it
      }
    }
  }
}

void Tcb::RetransmitTimeout(Instant now, FrameSink& out) {
  const TcpConfig& c = host_.tcp_config();
  const RtoKind kind = rto_kind_;
  rto_kind_ = RtoKind::kNone;
  if (kind == RtoKind::kNone) return;
  host_.counters().tcp_rto_expirations++;

  if (state_ == TcpState::kSynSent || state_ == TcpState::kSynReceived) {
    const int limit = state_ == TcpState::kSynSent
                          ? (options.syn_count != 0 ? options.syn_count : c.syn_retries)
                          : c.synack_retries;
    if (retries_ >= limit) {
      host_.counters().tcp_failed_attempts++;
      host_.counters().tcp_timeouts++;
      Fail(now, soft_error_ != 0 ? soft_error_ : ETIMEDOUT);
      return;
    }
    ++retries_;
    rtt_.Backoff();
    send_syn_ = true;
    Output(now, out);
    return;
  }

  // Linux tcp_out_of_resources (tcp_check_oom): an orphan whose timer fires while the stack's
  // memory is at its limit, and that holds more than a minimum of send buffer (its peer is
  // slow or gone, e.g. a window shut for good), is reset to give the memory back
  // (TCPAbortOnMemory).
  if (OrphanOutOfMemory()) {
    host_.counters().tcp_abort_on_memory++;
    Abort(now, &out, ENOMEM);
    return;
  }
  const bool user_timeout_hit = options.user_timeout != Duration::Zero() && retries_ > 0 &&
                                now - first_retransmit_ >= options.user_timeout;
  if (kind == RtoKind::kPersist) {
    if (!(data_end() > snd_max_) || snd_una_ < snd_max_) return;  // nothing waits, or the RTO runs
    // Linux tcp_probe_timer: the probes end the connection after tcp_retries2 of them, or
    // once TCP_USER_TIMEOUT has passed since the first (icsk_probes_tstamp).
    if (probes_ == 0) first_retransmit_ = now;
    if (probes_ >= c.data_retries ||
        (options.user_timeout != Duration::Zero() && probes_ > 0 &&
         now - first_retransmit_ >= options.user_timeout)) {
      host_.counters().tcp_timeouts++;
      Abort(now, &out, ETIMEDOUT);
      return;
    }
    if (snd_wnd_ != 0) {
      // The window is open: the data was held back (Linux tcp_write_wakeup); send it. If the
      // device refuses it too (a full transmit queue, local congestion), Linux's probe timer
      // keeps trying every TCP_RESOURCE_PROBE_INTERVAL without backing off, counting probes
      // (tcpi_probes; tcp_send_probe0).
      if (WriteWakeup(now, out)) {
        probes_ = 0;
        return;
      }
      ++probes_;
      rto_kind_ = RtoKind::kPersist;
      rto_deadline_ = now + kResourceProbeInterval;
      return;
    }
    // Zero-window probe with backoff (RFC 9293 3.8.6.1; Linux tcp_probe_timer).
    ++probes_;
    host_.counters().tcp_zero_window_probes++;
    SendProbe(now, out);
    rtt_.Backoff();
    rto_kind_ = RtoKind::kPersist;
    rto_deadline_ = now + rtt_.rto();
    return;
  }

  if (!(snd_una_ < snd_max_)) return;
  if (retries_ >= c.data_retries || user_timeout_hit) {
    host_.counters().tcp_timeouts++;
    Fail(now, soft_error_ != 0 ? soft_error_ : ETIMEDOUT);
    return;
  }
  if (retries_ == 0) first_retransmit_ = now;
  ++retries_;
  // A timeout inside a recovery episode keeps the episode's undo state (Linux tcp_enter_loss).
  if (!(in_recovery_ || rto_recovery_) || !undo_valid_) InitUndo();
  // RFC 5681 (3.1) eq. 4 and RFC 6298 (5.4)-(5.6): collapse the window, back off, go back N.
  // RFC 9438 4.8: CUBIC takes ssthresh from beta_cubic here too.
  if (!in_recovery_ || retries_ == 1) ssthresh_ = CongestionEvent(true);
  cwnd_ = snd_mss_;
  cc_.OnTimeout();
  cwr_ = false;
  if (ecn_ok_) ecn_queue_cwr_ = true;  // Linux tcp_enter_loss: the peer hears of it (RFC 3168)
  // RFC 8985 7: the timeout ends any probe episode.
  tlp_active_ = false;
  tlp_deadline_ = Instant::Never();
  in_recovery_ = false;
  dupacks_ = 0;
  rtt_.Backoff();
  recover_ = snd_max_;
  rto_recovery_ = true;
  const bool fin_out = fin_queued_ && snd_max_ > data_end();
  if (sack_ok_ && (!tx_.empty() || fin_out)) {
    // As Linux's tcp_enter_loss: every segment not SACKed is marked lost and recovery resends
    // them in order as the window allows, skipping what the receiver already holds (the SACK
    // scoreboard is kept across the timeout), instead of going back N over the whole flight.
    // When the first unacknowledged segment is SACKed the receiver has reneged: forget
    // every SACK (RFC 2018 section 8; Linux tcp_timeout_mark_lost) and resend it all.
    if (!tx_.empty() && (tx_.at(tx_.first_id()).flags & TxRecords::kSacked) != 0) {
      for (uint32_t id = tx_.first_id(); id != tx_.end_id(); ++id) tx_.Unsack(id);
      scoreboard_len_ = 0;
    }
    for (uint32_t id = tx_.first_id(); id != tx_.end_id(); ++id) tx_.MarkLost(id);
    in_recovery_ = true;
    fin_rexmit_pending_ = fin_out;
    reo_deadline_ = Instant::Never();
  } else {
    snd_nxt_ = snd_una_;
  }
  rto_kind_ = RtoKind::kRetransmit;
  rto_deadline_ = now + rtt_.rto();
  if (options.user_timeout != Duration::Zero()) {
    // Linux (tcp_clamp_rto_to_user_timeout): never wait past the user timeout.
    rto_deadline_ = Min(rto_deadline_, first_retransmit_ + options.user_timeout);
  }
  Output(now, out);
}

}  // namespace shake
