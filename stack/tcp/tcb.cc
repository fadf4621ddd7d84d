#include "stack/tcp/tcb.h"
#include "stack/tcp/tcb_internal.h"

#include <algorithm>
#include <bit>
#include <cerrno>

namespace shake {

using wire::TcpHeader;
namespace flag = wire::tcpflag;

using namespace tcb_internal;

Tcb::Tcb(TcpHost& host, std::pmr::memory_resource* mem)
    : accept_queue(mem),
      host_(host),
      send_q_(mem),
      eor_(mem),
      recv_(mem),
      cc_(host.tcp_config().congestion_control),
      tx_(mem),
      rtt_(host.tcp_config().rto_initial, host.tcp_config().rto_min,
           host.tcp_config().rto_max) {
  const TcpConfig& c = host.tcp_config();
  want_ws_ = c.window_scaling;
  want_sack_ = c.sack;
  want_ts_ = c.timestamps;
}

size_t Tcb::recv_capacity() const {
  return options.recv_buffer != 0 ? options.recv_buffer : host_.tcp_config().recv_buffer;
}
size_t Tcb::send_capacity() const {
  if (options.send_buffer != 0) return options.send_buffer;  // SO_SNDBUF: fixed, as on Linux
  const size_t most = host_.tcp_config().send_buffer;
  return snd_buf_ != 0 ? std::min(snd_buf_, most) : most;
}

void Tcb::ExpandSendBuffer() {
  // Linux tcp_sndbuf_expand with its default factor 2 (CUBIC, Reno): room for twice the larger
  // of the initial window (10 segments), cwnd and the reordering degree + 1, each segment
  // counted as Linux charges it: the MSS with its header room and shared info (512 bytes)
  // rounded up to a power of two, plus the sk_buff (256). For an MSS of 1448 that is 46,080
  // bytes at first. A connection whose window stays shut (zero-window persist) keeps that
  // much, not the whole send_buffer.
  // Linux tcp_should_expand_sndbuf: not while the stack is under memory pressure.
  if (snd_buf_ != 0 && host_.memory().under_pressure()) return;
  const size_t mss = std::max<size_t>(snd_mss_, 536);
  const size_t per_segment = std::bit_ceil(mss + 512) + 256;
  const size_t segments = std::max<size_t>(
      {10, cwnd_ / mss, static_cast<size_t>(std::max(reordering_, 0)) + 1});
  snd_buf_ = std::max(snd_buf_, 2 * segments * per_segment);
}

void Tcb::SetState(Instant now, TcpState s) {
  if (s == state_) return;
  const TcpState from = state_;
  state_ = s;
  if (s == TcpState::kEstablished) ExpandSendBuffer();  // Linux tcp_init_buffer_space
  if (s == TcpState::kEstablished) {
    ever_connected_ = true;
    established_at_ = now;
  }
  host_.StateChanged(now, *this, from);
  host_.ReadinessChanged(*this);
}

void Tcb::MakeListener(int backlog_limit) {
  backlog = backlog_limit;
  state_ = TcpState::kListen;
}

// ---- Opening ------------------------------------------------------------------------------

void Tcb::OpenActive(Instant now, SeqNum iss, uint32_t ts_offset) {
  iss_ = iss;
  snd_sml_ = iss;
  snd_una_ = iss;
  snd_nxt_ = iss;
  snd_max_ = iss;
  ts_offset_ = ts_offset;
  // The window scale we offer follows the receive buffer (RFC 7323 2.2).
  rcv_wscale_ = want_ws_ ? WindowScaleFor(recv_capacity()) : 0;
  send_syn_ = true;
  retries_ = 0;
  last_received_ = now;
  SetState(now, TcpState::kSynSent);
}

void Tcb::OpenPassive(Instant now, SeqNum iss, uint32_t ts_offset, const PeerSyn& syn) {
  iss_ = iss;
  snd_sml_ = iss;
  snd_una_ = iss;
  snd_nxt_ = iss;
  snd_max_ = iss;
  ts_offset_ = ts_offset;
  irs_ = syn.irs;
  recv_.Reset(syn.irs + 1);
  rcv_adv_ = recv_.rcv_nxt();
  last_ack_sent_ = recv_.rcv_nxt();
  // RFC 9293 3.10.7.2: the SYN's window is never scaled.
  snd_wnd_ = syn.window;
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = syn.irs;
  snd_wl2_ = iss;
  ApplyPeerOptions(syn.options, /*is_syn=*/true);
  ecn_ok_ = syn.ecn;  // RFC 3168 6.1.1: the SYN-ACK answers with ECE
  send_syn_ = true;
  retries_ = 0;
  last_received_ = now;
  state_ = TcpState::kSynReceived;  // the host files the child itself
}

void Tcb::OpenFromCookie(Instant now, SeqNum iss, uint32_t ts_offset, const PeerSyn& syn) {
  OpenPassive(now, iss, ts_offset, syn);
  // The cookie SYN-ACK is out: SND.NXT is past it, and without state it is never resent.
  send_syn_ = false;
  from_cookie_ = true;
  snd_nxt_ = iss + 1;
  snd_max_ = snd_nxt_;
}

uint8_t Tcb::WindowScaleFor(size_t capacity) {
  uint8_t ws = 0;
  while (ws < 14 && (size_t{65535} << ws) < capacity) ++ws;
  return ws;
}

void Tcb::ApplyPeerOptions(const wire::TcpOptions& o, bool is_syn) {
  if (!is_syn) return;
  peer_mss_ = o.mss.value_or(536);
  // Never let a peer push the segment size below what keeps the header overhead sane.
  if (peer_mss_ < kMinMss - 40) peer_mss_ = kMinMss - 40;
  ws_ok_ = want_ws_ && o.window_scale.has_value();
  if (ws_ok_) {
    // RFC 7323 2.3: a shift above 14 is used as 14.
    snd_wscale_ = std::min<uint8_t>(*o.window_scale, 14);
    if (state_ == TcpState::kClosed || state_ == TcpState::kListen) {
      rcv_wscale_ = WindowScaleFor(recv_capacity());
    }
  } else {
    snd_wscale_ = 0;
    rcv_wscale_ = 0;
  }
  sack_ok_ = want_sack_ && o.sack_permitted;
  ts_ok_ = want_ts_ && o.timestamp.has_value();
  if (ts_ok_) ts_recent_ = o.timestamp->val;
  ClampMss(0);
  rcv_mss_ = std::min(peer_mss_, local_mss);
  quickacks_ = kMaxQuickAcks;
  cwnd_ = std::min<uint32_t>(10u * snd_mss_, std::max<uint32_t>(2u * snd_mss_, 14600));
}

void Tcb::ClampMss(uint16_t mtu_mss) {
  // Our own advertised MSS bounds what we send too, as Linux does.
  uint16_t mss = std::min(peer_mss_, local_mss);
  if (options.max_segment != 0) mss = std::min(mss, options.max_segment);
  if (mtu_mss != 0) mss = std::min(mss, mtu_mss);
  if (ts_ok_) mss = static_cast<uint16_t>(mss - kTimestampOptionLen);
  snd_mss_ = std::max<uint16_t>(mss, 48);
}

// ---- Segment arrival ----------------------------------------------------------------------

void Tcb::SampleRtt(Instant now, const TcpHeader& h, bool acked) {
  // RFC 6298 with Karn's rule, as Linux's tcp_ack_update_rtt: from the send time of the oldest
  // segment this ACK newly acknowledges, unless it acknowledges a retransmission; else of the
  // first segment it newly SACKs; else from the timestamp echo (RFC 7323 4.1) when it
  // acknowledges new data. Linux prefers its own clock to the echo, which a peer may garble.
  Duration sample = Duration::Nanos(-1);
  if (ack_info_.seq_valid && !ack_info_.retrans_acked) {
    sample = now - ack_info_.first_acked;
  } else if (ack_info_.sack_valid) {
    sample = now - ack_info_.first_sacked;
  }
  if (sample < Duration::Zero() && acked) sample = TimestampRtt(now, h);
  if (sample >= Duration::Zero()) rtt_.Sample(sample, snd_una_, snd_nxt_);
}

Duration Tcb::TimestampRtt(Instant now, const TcpHeader& h) const {
  // RFC 7323 4.1 as Linux's tcp_rtt_tsopt_us: the echo of one of our TSvals, in milliseconds
  // (at least one); none when timestamps are off or the echo is zero.
  if (!ts_ok_ || !h.options.timestamp || h.options.timestamp->ecr == 0) return Duration::Nanos(-1);
  const auto delta = static_cast<int32_t>(host_.TimestampClock(now) -
                                          (h.options.timestamp->ecr - ts_offset_));
  if (delta < 0) return Duration::Nanos(-1);
  return Duration::Millis(delta == 0 ? 1 : delta);
}

TcpHeader Tcb::ResetFor(const TcpHeader& h, size_t payload_len) {
  // RFC 9293 3.10.7.1: if the ACK bit is off, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>;
  // otherwise <SEQ=SEG.ACK><CTL=RST>.
  TcpHeader r;
  r.src_port = h.dst_port;
  r.dst_port = h.src_port;
  if (h.has(flag::kAck)) {
    r.seq = h.ack;
    r.flags = flag::kRst;
  } else {
    r.seq = SeqNum(0);
    r.ack = h.seq + SegLen(h, payload_len);
    r.flags = flag::kRst | flag::kAck;
  }
  return r;
}

void Tcb::SegmentArrives(Instant now, const TcpHeader& h, wire::Bytes payload, FrameSink& out,
                         uint8_t ecn) {
  last_received_ = now;
  rx_ecn_ = ecn;
  if (state_ == TcpState::kSynSent) {
    SynSentArrives(now, h, out);
    return;
  }
  if (state_ == TcpState::kTimeWait) {
    // RFC 9293 3.10.7.4 for TIME-WAIT, as Linux does it (tcp_timewait_state_process).
    if (h.has(flag::kRst)) {
      // Linux (tcp_rfc1337 = 0) lets an RST end TIME-WAIT early.
      if (h.seq == recv_.rcv_nxt() || !IsSynchronized(state_)) {
        done_ = true;
        SetState(now, TcpState::kClosed);
      }
      return;
    }
    if (h.has(flag::kFin) && h.seq + static_cast<uint32_t>(payload.size()) + 1 == recv_.rcv_nxt()) {
      // A retransmitted FIN: re-ACK it and restart the 2*MSL timer.
      state_deadline_ = now + host_.tcp_config().time_wait;
      SendAck(now, out);
      return;
    }
    if (h.has(flag::kSyn)) {
      // A SYN that TimeWaitAcceptsSyn refused (the host tried first): answer with an ACK.
      SendAck(now, out);
      return;
    }
    if (!h.has(flag::kAck)) return;
    if (!payload.empty() || h.seq != recv_.rcv_nxt()) SendAck(now, out);
    return;
  }

  if (state_ == TcpState::kSynReceived && h.has(flag::kSyn) && !h.has(flag::kRst) &&
      h.seq == irs_) {
    if (!h.has(flag::kAck)) {
      // The peer retransmitted its SYN: our SYN-ACK was lost. Send it again.
      send_syn_ = true;
      Output(now, out);
      return;
    }
    if (listener == 0 && h.ack == snd_max_) {
      // Simultaneous open (RFC 9293 figure 8): the peer's SYN-ACK. Its SYN is old news;
      // process the rest as Linux does (tcp_validate_incoming).
      TcpHeader rest = h;
      rest.flags = static_cast<uint8_t>(h.flags & ~flag::kSyn);
      rest.seq = h.seq + 1;
      ack_now_ = true;  // RFC 9293 figure 8, line 7
      SegmentArrives(now, rest, payload, out);
      return;
    }
  }

  if (!CheckSequence(now, h, payload, out)) return;

  // Second, the RST bit (RFC 9293 3.10.7.4, with RFC 5961 3.2).
  if (h.has(flag::kRst)) {
    host_.counters().tcp_resets_in++;
    if (h.seq == recv_.rcv_nxt()) {
      if (state_ == TcpState::kSynReceived && listener != 0) {
        // A passive open goes back to LISTEN: the child is simply dropped.
        done_ = true;
        SetState(now, TcpState::kClosed);
        return;
      }
      const int err = state_ == TcpState::kCloseWait ? EPIPE : ECONNRESET;
      const bool report = state_ != TcpState::kClosing && state_ != TcpState::kLastAck;
      Fail(now, report ? err : 0);
      return;
    }
    host_.counters().CountDrop(Drop::kRstIgnored);
    SendChallengeAck(now, out, /*rfc5961=*/true);
    return;
  }

  // Fourth, the SYN bit (RFC 5961 4.2): a SYN in a synchronized state draws a challenge ACK.
  if (h.has(flag::kSyn)) {
    SendChallengeAck(now, out, /*rfc5961=*/true);
    return;
  }

  // Fifth, the ACK field.
  if (!h.has(flag::kAck)) return;
  if (!ProcessAck(now, h, payload.size(), out)) return;

  // Seventh, the segment text; eighth, the FIN bit.
  ProcessData(now, h, payload, out);
  Output(now, out);
}

void Tcb::SynSentArrives(Instant now, const TcpHeader& h, FrameSink& out) {
  // RFC 9293 3.10.7.3.
  if (h.has(flag::kAck)) {
    if (h.ack <= iss_ || h.ack > snd_max_) {
      // Linux: an earlier FIN/ACK or RST/ACK of ours may have been ignored by the peer;
      // retransmit the SYN almost at once (TCP_TIMEOUT_MIN) unless already retransmitting.
      if (retries_ == 0) rto_deadline_ = now + Duration::Millis(2);
      if (!h.has(flag::kRst)) {
        host_.counters().CountDrop(Drop::kBadAck);
        TcpHeader r;
        r.src_port = tuple.local.port;
        r.dst_port = tuple.remote.port;
        r.seq = h.ack;
        r.flags = flag::kRst;
        host_.Transmit(now, *this, r, 0, 0, false, out);
        host_.counters().tcp_resets_out++;
      }
      return;
    }
  }
  if (h.has(flag::kRst)) {
    host_.counters().tcp_resets_in++;
    if (h.has(flag::kAck)) {
      Fail(now, ECONNREFUSED);  // "error: connection reset"; connect() reports ECONNREFUSED
    } else {
      host_.counters().CountDrop(Drop::kRstIgnored);
    }
    return;
  }
  if (!h.has(flag::kSyn)) return;

  irs_ = h.seq;
  recv_.Reset(h.seq + 1);
  rcv_adv_ = recv_.rcv_nxt();
  ApplyPeerOptions(h.options, /*is_syn=*/true);
  // RFC 3168 6.1.1: an ECN-setup SYN-ACK has ECE and not CWR (Linux tcp_ecn_rcv_synack).
  ecn_ok_ = syn_asked_ecn_ && h.has(flag::kAck) && h.has(flag::kEce) && !h.has(flag::kCwr);
  if (h.has(flag::kAck)) {
    snd_una_ = h.ack;
    snd_nxt_ = SeqMax(snd_nxt_, snd_una_);
    // RFC 9293: the window in a SYN-ACK is not scaled.
    snd_wnd_ = h.window;
    max_snd_wnd_ = snd_wnd_;
    snd_wl1_ = h.seq;
    snd_wl2_ = h.ack;
    // Linux tcp_ack_update_rtt: the SYN's own send time unless it was resent (Karn), then the
    // timestamp echo.
    if (retries_ == 0) {
      rtt_.Sample(now - rtt_start_, snd_una_, snd_nxt_);
    } else if (const Duration ts = TimestampRtt(now, h); ts >= Duration::Zero()) {
      rtt_.Sample(ts, snd_una_, snd_nxt_);
    }
    retries_ = 0;
    rto_kind_ = RtoKind::kNone;
    rto_deadline_ = Instant::Never();
    send_syn_ = false;
    SetState(now, TcpState::kEstablished);
    ack_now_ = true;
    Output(now, out);
    return;
  }
  // Simultaneous open: SYN-SENT -> SYN-RECEIVED, and our SYN-ACK reuses our ISS.
  snd_wnd_ = h.window;
  max_snd_wnd_ = snd_wnd_;
  snd_wl1_ = h.seq;
  snd_nxt_ = iss_;
  send_syn_ = true;
  retries_ = 0;
  SetState(now, TcpState::kSynReceived);
  Output(now, out);
}

bool Tcb::CheckSequence(Instant now, const TcpHeader& h, wire::Bytes payload, FrameSink& out) {
  const uint32_t seg_len = SegLen(h, payload.size());
  // RFC 7323 5.3 R1: PAWS. Linux accepts an RST even when it fails PAWS.
  if (ts_ok_ && h.options.timestamp && !h.has(flag::kRst) &&
      static_cast<int32_t>(h.options.timestamp->val - ts_recent_) < 0) {
    host_.counters().CountDrop(Drop::kPawsReject);
    SendChallengeAck(now, out, /*rfc5961=*/false);  // a duplicate ACK, under the same rate limit as Linux
    return false;
  }
  // RFC 9293 3.10.7.4's acceptability test, in the form Linux uses (tcp_sequence): the segment
  // must not end before the RCV.NXT we last acknowledged, nor start past the window's right edge.
  // This is a superset of the RFC's test: it also takes an ACK carrying an older sequence
  // number (a peer that fell back after a timeout), whose acknowledgment is still news. Data
  // that turns out to be old is answered with a duplicate ACK in ProcessData.
  const SeqNum rcv_nxt = recv_.rcv_nxt();
  const SeqNum right_edge = SeqMax(rcv_adv_, rcv_nxt);
  const SeqNum rcv_wup = SeqMin(last_ack_sent_, rcv_nxt);
  bool ok = !(h.seq + seg_len < rcv_wup) && !(h.seq > right_edge);
  // A zero-window probe or a keepalive one below rcv_nxt still draws an ACK.
  if (!ok) {
    host_.counters().CountDrop(Drop::kOutOfWindow);
    if (h.has(flag::kRst)) return false;
    if (h.has(flag::kSyn)) {
      SendChallengeAck(now, out, /*rfc5961=*/true);
      return false;
    }
    if (sack_ok_ && !payload.empty() && h.seq + seg_len <= rcv_nxt) {
      dsack_pending_ = true;  // RFC 2883: tell the sender this was a duplicate
      dsack_ = {h.seq, h.seq + static_cast<uint32_t>(payload.size())};
    }
    // Linux rate-limits duplicate ACKs only for segments without data (tcp_oow_rate_limited).
    if (payload.empty()) {
      SendChallengeAck(now, out, /*rfc5961=*/false);
    } else {
      SendAck(now, out);
    }
    return false;
  }
  // RFC 7323 4.3: remember the timestamp when the segment covers the last ACK we sent.
  if (ts_ok_ && h.options.timestamp && h.seq <= last_ack_sent_ &&
      !(h.seq + seg_len - (h.has(flag::kFin) ? 1u : 0u) < last_ack_sent_)) {
    ts_recent_ = h.options.timestamp->val;
  }
  return true;
}

bool Tcb::ProcessAck(Instant now, const TcpHeader& h, size_t payload_len, FrameSink& out) {
  if (state_ == TcpState::kSynReceived) {
    if (!(snd_una_ < h.ack && h.ack <= snd_max_)) {
      // RFC 9293: <SEQ=SEG.ACK><CTL=RST>.
      host_.counters().CountDrop(Drop::kBadAck);
      TcpHeader r = ResetFor(h, payload_len);
      host_.Transmit(now, *this, r, 0, 0, false, out);
      host_.counters().tcp_resets_out++;
      return false;
    }
    if (listener != 0 && !host_.CanEstablish(*this)) {
      host_.counters().CountDrop(Drop::kAcceptQueueFull);
      return false;
    }
    snd_una_ = snd_una_ + 1;  // our SYN
    snd_nxt_ = SeqMax(snd_nxt_, snd_una_);
    snd_wnd_ = static_cast<uint32_t>(h.window) << snd_wscale_;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    snd_wl1_ = h.seq;
    snd_wl2_ = h.ack;
    // Linux tcp_synack_info_meas: the SYN-ACK's send time unless it was resent (Karn) or came
    // from a cookie (no state kept), then the timestamp echo.
    if (retries_ == 0 && !from_cookie_) {
      rtt_.Sample(now - rtt_start_, snd_una_, snd_nxt_);
    } else if (const Duration ts = TimestampRtt(now, h); ts >= Duration::Zero()) {
      rtt_.Sample(ts, snd_una_, snd_nxt_);
    }
    retries_ = 0;
    send_syn_ = false;
    rto_kind_ = RtoKind::kNone;
    rto_deadline_ = Instant::Never();
    SetState(now, TcpState::kEstablished);
    // Fall through: the ACK may carry data and may acknowledge our FIN (simultaneous cases).
  }

  // RFC 5961 5.2: acceptable when SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT. An ACK of data
  // not yet sent (an optimistic ACK) has its own reason, as Linux's TCP_ACK_UNSENT_DATA.
  if (h.ack > snd_max_) {
    host_.counters().CountDrop(Drop::kAckUnsent);
    SendChallengeAck(now, out, /*rfc5961=*/true);
    return false;
  }
  if (h.ack < snd_una_ - max_snd_wnd_) {
    host_.counters().CountDrop(Drop::kBadAck);
    SendChallengeAck(now, out, /*rfc5961=*/true);
    return false;
  }

  const bool advances = h.ack > snd_una_;
  const uint32_t new_wnd = static_cast<uint32_t>(h.window) << snd_wscale_;
  // Duplicate ACK as RFC 5681 defines it.
  const bool dup = !advances && h.ack == snd_una_ && payload_len == 0 &&
                   !h.has(flag::kFin) && new_wnd == snd_wnd_ && snd_max_ > snd_una_;
  if (sack_ok_ && rack_.dsack_round_active && snd_una_ >= rack_.dsack_round) {
    rack_.dsack_round_active = false;  // RFC 8985 6.2 step 4: one widening per round trip
  }
  const wire::SackBlock* dsack_block = nullptr;
  ack_info_ = AckInfo{};
  ack_info_.lost_before = tx_.lost_marked();
  // Reordering is judged against the highest SACKed byte before this ACK (Linux prior_fack).
  ack_info_.prior_fack = highest_sacked();
  if (sack_ok_ && h.options.sack_count != 0) {
    // RFC 2883 section 4: the first block reports a duplicate when it lies below the cumulative
    // ACK or inside the second block.
    const wire::SackBlock& b0 = h.options.sack[0];
    const bool dsack = b0.right <= h.ack ||
                       (h.options.sack_count > 1 && h.options.sack[1].left <= b0.left &&
                        b0.right <= h.options.sack[1].right);
    if (dsack && b0.left < b0.right) {
      ProcessDsack(b0);
      dsack_block = &b0;
    }
    UpdateSackScoreboard(h.options);
    MarkSackedRecords(now, h.options, dsack ? 1 : 0);
  }

  // Window update (RFC 9293 3.10.7.4, SND.WL1/SND.WL2).
  if (snd_wl1_ < h.seq || (snd_wl1_ == h.seq && snd_wl2_ <= h.ack)) {
    const bool opened = snd_wnd_ == 0 && new_wnd != 0;
    snd_wnd_ = new_wnd;
    max_snd_wnd_ = std::max(max_snd_wnd_, snd_wnd_);
    snd_wl1_ = h.seq;
    snd_wl2_ = h.ack;
    if (opened && rto_kind_ == RtoKind::kPersist) {
      rto_kind_ = RtoKind::kNone;
      rto_deadline_ = Instant::Never();
      probes_ = 0;
      rtt_.ResetBackoff();
    }
  }

  if (advances) {
    NewAck(now, h, h.ack);
    CheckReordering();
  } else {
    CheckReordering();
    SampleRtt(now, h, /*acked=*/false);  // a SACK alone may measure
    // Linux tcp_may_raise_cwnd: once reordering is known to exceed the default, SACKs
    // alone grow the window too.
    if (reordering_ > 3 && !in_recovery_ && !rto_recovery_ && ack_info_.delivered_bytes != 0) {
      GrowWindow(now, ack_info_.delivered_bytes);
    }
  }
  if (dup) {
    host_.counters().tcp_dup_acks_in++;
    ++dupacks_;
    max_dupacks_ = std::max(max_dupacks_, dupacks_);
    // The duplicate-ACK threshold is the reordering degree seen so far (Linux tp->reordering),
    // but never more than the flight can produce.
    const int flight_segs = static_cast<int>(FlightSize() / snd_mss_);
    const int dupthresh = std::max(3, std::min(reordering_, flight_segs - 1));
    if (!in_recovery_ && sack_ok_ && dupacks_ == 3 && tx_.sacked_bytes() == 0) {
      // Duplicate ACKs without SACK information (RFC 6675 5 step 4.3): SND.UNA is lost.
      if (!tx_.empty()) tx_.MarkLost(tx_.first_id());
      EnterRecovery(now);
    } else if (!in_recovery_ && !sack_ok_ && dupacks_ == dupthresh) {
      EnterRecovery(now);
    } else if (in_recovery_ && !sack_ok_) {
      cwnd_ += snd_mss_;  // RFC 6582 step 4: inflate for each further duplicate
    }
  }
  // RFC 8985 6.2 step 5 replaces RFC 6675's IsLost: a segment is lost once one sent after it
  // was delivered and an RTT plus the reordering window has passed since it was sent. Any loss
  // starts recovery, whether or not the ACKs count as duplicates (their window may change).
  if (tlp_active_) ProcessLossProbeAck(h, advances, dup, dsack_block);
  if (sack_ok_ && snd_una_ < snd_max_ && state_ != TcpState::kSynReceived) {
    RackDetectLoss(now);
    if (!in_recovery_ && tx_.lost_bytes() != 0) EnterRecovery(now);
  }
  // RFC 3168 6.1.2 as Linux: the CWR state ends once the data in flight when it began is
  // acknowledged; an ECE (not on a SYN-ACK) starts one unless cwnd is already being reduced.
  if (cwr_ && snd_una_ > cwr_high_) {
    cwr_ = false;
    cwnd_ = ssthresh_;
  }
  if (ecn_ok_ && h.has(flag::kEce) && !h.has(flag::kSyn) && !cwr_ && !in_recovery_ &&
      !rto_recovery_) {
    EnterCwr();
  }
  // RFC 6937: the window during SACK recovery or CWR follows what this ACK delivered.
  if ((in_recovery_ && !rto_recovery_ && sack_ok_) || cwr_) {
    CwndReduction(ack_info_.delivered, tx_.lost_marked() - ack_info_.lost_before, advances);
  }
  // RFC 8985 7.2: an ACK that advances SND.UNA restarts the probe timer; one that brings SACKs
  // or starts recovery leaves loss detection to RACK and fast recovery instead.
  // Linux rearms the probe only with an ACK of new data (FLAG_SET_XMIT_TIMER); any other ACK
  // leaves it where it was, unless it is no longer allowed (SACKs now show the tail).
  if (advances) {
    ScheduleLossProbe(now);
  } else if (!tlp_deadline_.is_never() && !LossProbeAllowed()) {
    tlp_deadline_ = Instant::Never();
  }

  // Closing states waiting for the ACK of our FIN.
  const bool fin_acked = this->fin_acked();
  switch (state_) {
    case TcpState::kFinWait1:
      if (fin_acked) {
        SetState(now, TcpState::kFinWait2);
        if (orphan()) state_deadline_ = now + FinWait2Timeout();
      }
      break;
    case TcpState::kClosing:
      if (fin_acked) EnterTimeWait(now);
      break;
    case TcpState::kLastAck:
      if (fin_acked) {
        done_ = true;
        SetState(now, TcpState::kClosed);
      }
      break;
    default:
      break;
  }
  // Whatever is still queued in CLOSING or LAST-ACK goes out with the next Output.
  return state_ != TcpState::kClosed && state_ != TcpState::kTimeWait;
}

void Tcb::NewAck(Instant now, const TcpHeader& h, SeqNum ack) {
  const auto acked = static_cast<uint32_t>(ack - snd_una_);
  tx_.AckTo(ack, [&](const TxRecords::Record& r, bool whole) {
    // For the RTT sample: the oldest newly acknowledged segment's send time, and whether any
    // acknowledged segment was ever resent (Linux tcp_clean_rtx_queue's first_ackt and
    // FLAG_RETRANS_DATA_ACKED).
    if ((r.flags & TxRecords::kSacked) == 0) {
      if (whole) ++ack_info_.delivered;
      ack_info_.delivered_bytes += whole ? r.len() : static_cast<uint32_t>(ack - r.start);
    }
    if ((r.flags & TxRecords::kEverRetrans) != 0) {
      ack_info_.retrans_acked = true;
    } else if ((r.flags & TxRecords::kSacked) == 0 && !ack_info_.seq_valid) {
      ack_info_.seq_valid = true;
      ack_info_.first_acked = r.xmit;
    }
    if (sack_ok_ && whole && (r.flags & TxRecords::kSacked) == 0) RackDelivered(now, r);
  });
  // RFC 3522 (Eifel) as Linux's tcp_try_undo_partial / tcp_try_undo_loss: an ACK echoing a
  // timestamp older than our first retransmission was caused by an original transmission, so
  // the retransmissions (and the window reduction) were spurious.
  if (undo_valid_ && (in_recovery_ || rto_recovery_) && PacketDelayed(h)) Undo();
  const size_t data_acked = std::min<size_t>(acked, send_q_.size());
  send_q_.Consume(data_acked);
  snd_una_ = ack;
  while (eor_head_ != eor_.size() && !(snd_una_ < eor_[eor_head_])) ++eor_head_;
  if (snd_nxt_ < snd_una_) snd_nxt_ = snd_una_;
  SampleRtt(now, h, /*acked=*/true);
  if (!sack_ok_) {
    // Without SACK, duplicate ACKs stood for segments delivered (Linux tcp_add_reno_sack);
    // the ACK that ends them delivers the rest, at least one (tcp_remove_reno_sacks).
    const uint32_t dup_bytes = static_cast<uint32_t>(dupacks_) * snd_mss_;
    ack_info_.delivered_bytes =
        acked > dup_bytes ? std::max(acked - dup_bytes, std::min<uint32_t>(acked, snd_mss_))
                          : std::min<uint32_t>(acked, snd_mss_);
  }
  dupacks_ = 0;
  retries_ = 0;
  probes_ = 0;
  rtt_.ResetBackoff();
  // Linux tcp_clean_rtx_queue: nothing left in flight stops the busy chronograph (or leaves
  // the one running if data still waits); tcp_check_space: room again in the send buffer, as
  // poll's POLLOUT defines it, stops the sndbuf one.
  if (!(snd_una_ < snd_max_)) ChronoStop(now, kChronoBusy);
  if (chrono_type_ == kChronoSndbuf && SendSpace() > 0 && SendSpace() >= send_q_.size() / 2) {
    ChronoStop(now, kChronoSndbuf);
  }
  // Drop SACK blocks now below SND.UNA.
  size_t keep = 0;
  for (size_t i = 0; i < scoreboard_len_; ++i) {
    if (scoreboard_[i].right > snd_una_) {
      scoreboard_[keep] = scoreboard_[i];
      if (scoreboard_[keep].left < snd_una_) scoreboard_[keep].left = snd_una_;
      ++keep;
    }
  }
  scoreboard_len_ = keep;

  if (rto_recovery_ && ack >= recover_) {
    // The timeout's retransmissions are all acknowledged (Linux leaves TCP_CA_Loss here); the
    // window keeps growing in slow start.
    rto_recovery_ = false;
    fin_rexmit_pending_ = false;
    if (in_recovery_) in_recovery_ = false;
    if (--rack_.reo_wnd_persist <= 0) {  // RFC 8985 6.2 step 4
      rack_.reo_wnd_mult = 1;
      rack_.reo_wnd_persist = 16;
    }
    if (undo_valid_ && undo_retrans_ == 0) Undo();
  }
  if (in_recovery_ && !rto_recovery_) {
    if (ack >= recover_) {
      // Full acknowledgment: leave recovery (RFC 6582 step 3, RFC 6675).
      in_recovery_ = false;
      cwnd_ = sack_ok_ ? ssthresh_
                       : std::min<uint32_t>(ssthresh_,
                                            static_cast<uint32_t>(FlightSize()) + snd_mss_);
      cwnd_ = std::max<uint32_t>(cwnd_, 2u * snd_mss_);
      if (--rack_.reo_wnd_persist <= 0) {  // RFC 8985 6.2 step 4
        rack_.reo_wnd_mult = 1;
        rack_.reo_wnd_persist = 16;
      }
      // Every retransmission was reported as a duplicate (RFC 2883): the recovery was
      // spurious (Linux tcp_try_undo_recovery).
      if (undo_valid_ && undo_retrans_ == 0) Undo();
    } else if (!sack_ok_) {
      // Partial acknowledgment (RFC 6582 step 5): retransmit the next hole, deflate.
      snd_nxt_ = snd_una_;
      cwnd_ = cwnd_ > acked ? cwnd_ - acked : 0;
      cwnd_ += snd_mss_;
      cwnd_ = std::max<uint32_t>(cwnd_, snd_mss_);
      high_rxt_ = snd_una_;
    } else {
      high_rxt_ = SeqMax(high_rxt_, snd_una_);
    }
  } else {
    // Linux tcp_cong_avoid: the window grows by what this ACK delivered, not by what it
    // acknowledges cumulatively (data SACKed earlier was counted when it was SACKed).
    GrowWindow(now, ack_info_.delivered_bytes);
  }
  ExpandSendBuffer();  // Linux tcp_new_space, after the ACK freed room and moved cwnd

  // RFC 6298 (5.2) and (5.3): stop the timer when all is acknowledged, restart it otherwise.
  if (snd_una_ == snd_max_) {
    rto_kind_ = RtoKind::kNone;
    rto_deadline_ = Instant::Never();
  } else {
    rto_kind_ = RtoKind::kRetransmit;
    rto_deadline_ = now + rtt_.rto();
    // SACK reneging (RFC 2018 section 8, Linux tcp_check_sack_reneging): SND.UNA advanced to
    // data the receiver had SACKed and now does not acknowledge. It dropped it; rather than
    // wait a whole RTO, time out after half an SRTT (at least 10 ms), and the timeout then
    // forgets the SACKs.
    if (sack_ok_ && acked > 0 && !tx_.empty() &&
        (tx_.at(tx_.first_id()).flags & TxRecords::kSacked) != 0) {
      rto_deadline_ = now + Max(rtt_.srtt() / 2, Duration::Millis(10));
    }
  }
  host_.ReadinessChanged(*this);
}

void Tcb::UpdateSackScoreboard(const wire::TcpOptions& o) {
  for (uint8_t i = 0; i < o.sack_count; ++i) {
    SeqNum l = o.sack[i].left;
    SeqNum r = o.sack[i].right;
    // Ignore blocks that are malformed, below SND.UNA or above what we sent (D-SACK too).
    if (!(l < r) || r > snd_max_ || l < snd_una_ || (r - l) > static_cast<int32_t>(0x40000000))
      continue;
    // Merge into the sorted scoreboard.
    size_t j = 0;
    while (j < scoreboard_len_ && scoreboard_[j].right < l) ++j;
    size_t k = j;
    while (k < scoreboard_len_ && scoreboard_[k].left <= r) {
      l = SeqMin(l, scoreboard_[k].left);
      r = SeqMax(r, scoreboard_[k].right);
      ++k;
    }
    if (k == j) {
      if (scoreboard_len_ == scoreboard_.size()) continue;  // full: forget this block
      std::copy_backward(scoreboard_.begin() + static_cast<std::ptrdiff_t>(j),
                         scoreboard_.begin() + static_cast<std::ptrdiff_t>(scoreboard_len_),
                         scoreboard_.begin() + static_cast<std::ptrdiff_t>(scoreboard_len_ + 1));
      ++scoreboard_len_;
    } else {
      std::copy(scoreboard_.begin() + static_cast<std::ptrdiff_t>(k),
                scoreboard_.begin() + static_cast<std::ptrdiff_t>(scoreboard_len_),
                scoreboard_.begin() + static_cast<std::ptrdiff_t>(j + 1));
      scoreboard_len_ -= (k - j - 1);
    }
    scoreboard_[j] = {l, r};
  }
}

uint32_t Tcb::sacked_bytes() const {
  uint32_t n = 0;
  for (size_t i = 0; i < scoreboard_len_; ++i)
    n += static_cast<uint32_t>(scoreboard_[i].right - scoreboard_[i].left);
  return n;
}

SeqNum Tcb::highest_sacked() const {
  return scoreboard_len_ == 0 ? snd_una_ : scoreboard_[scoreboard_len_ - 1].right;
}

bool Tcb::NextHole(SeqNum from, SeqNum limit, SeqNum* start, SeqNum* end) const {
  SeqNum s = from;
  for (size_t i = 0; i < scoreboard_len_; ++i) {
    const Sacked& b = scoreboard_[i];
    if (b.right <= s) continue;
    if (b.left <= s) {
      s = b.right;
      continue;
    }
    // [s, b.left) is a hole.
    if (!(s < limit)) return false;
    *start = s;
    *end = SeqMin(b.left, limit);
    return true;
  }
  if (!(s < limit)) return false;
  *start = s;
  *end = limit;
  return true;
}

void Tcb::EnterRecovery(Instant now) {
  // RFC 5681 (3.2) step 2 / RFC 6675 (5) step 4.
  host_.counters().tcp_fast_retransmits++;
  InitUndo();
  // Linux tcp_enter_recovery: a reduction already under way (CWR after an ECN echo) goes on;
  // otherwise a new one starts, and an ECN connection tells the peer with CWR.
  const bool reducing = cwr_;
  cwr_ = false;
  if (!reducing) {
    ssthresh_ = CongestionEvent(false);
    if (ecn_ok_) ecn_queue_cwr_ = true;
  }
  // The recovery's own reduction stands for any loss a pending tail loss probe would have
  // reported (Linux clears tlp_high_seq when a window reduction begins).
  tlp_active_ = false;
  tlp_deadline_ = Instant::Never();
  recover_ = snd_max_;
  in_recovery_ = true;
  high_rxt_ = snd_una_;
  if (sack_ok_) {
    // RFC 6937 3: PRR takes cwnd from here, ACK by ACK (CwndReduction); the first
    // retransmission goes out whatever it allows (Linux tcp_cwnd_reduction's forced one).
    if (!reducing) {
      const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
      prr_prior_cwnd_ = std::max<uint32_t>(cwnd_ / mss, 1);
      prr_delivered_ = 0;
      prr_out_ = 0;
    }
    force_rexmit_ = true;
  } else {
    cwnd_ = ssthresh_ + 3u * snd_mss_;
    // Retransmit the first unacknowledged segment now.
    snd_nxt_ = snd_una_;
  }
  (void)now;
}

void Tcb::CwndReduction(uint32_t delivered, uint32_t newly_lost, bool advanced) {
  // RFC 6937 3 in Linux's form: while pipe exceeds ssthresh, send in proportion to what was
  // delivered, ssthresh / RecoverFS of it (RecoverFS as Linux: cwnd when recovery began);
  // below ssthresh, PRR-SSRB (slow start reduction bound): what was delivered and not yet
  // matched, plus one when SND.UNA advanced without new loss, at most up to ssthresh.
  if (delivered == 0 || prr_prior_cwnd_ == 0) return;
  const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  const int64_t pipe = tx_.packets_in_flight();
  const int64_t ssthresh = ssthresh_ / mss;
  const int64_t delta = ssthresh - pipe;
  prr_delivered_ += delivered;
  int64_t sndcnt;
  if (delta < 0) {
    sndcnt = (ssthresh * prr_delivered_ + prr_prior_cwnd_ - 1) / prr_prior_cwnd_ - prr_out_;
  } else {
    sndcnt = std::max<int64_t>(int64_t{prr_delivered_} - prr_out_, delivered);
    if (advanced && newly_lost == 0) ++sndcnt;
    sndcnt = std::min(delta, sndcnt);
  }
  // Entering recovery always lets the fast retransmission out.
  sndcnt = std::max<int64_t>(sndcnt, prr_out_ != 0 ? 0 : 1);
  cwnd_ = static_cast<uint32_t>(std::max<int64_t>(pipe + sndcnt, 1) * mss);
}

void Tcb::EnterCwr() {
  // Linux tcp_enter_cwr / tcp_init_cwnd_reduction: ssthresh from the congestion controller,
  // PRR from the current window, CWR on the next new data (RFC 3168 6.1.2).
  cwr_ = true;
  cwr_high_ = snd_max_;
  ssthresh_ = CongestionEvent(false);
  const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  prr_prior_cwnd_ = std::max<uint32_t>(cwnd_ / mss, 1);
  prr_delivered_ = 0;
  prr_out_ = 0;
  ecn_queue_cwr_ = true;
  undo_valid_ = false;  // nothing to undo: the peer's network said so
}

void Tcb::EcnReceive(const TcpHeader& h, uint8_t ecn) {
  // RFC 3168 6.1.3, as Linux (tcp_ecn_accept_cwr, __tcp_ecn_check_ce): the sender's CWR
  // ends our echo, and is acknowledged at once; a CE mark starts the echo (ECE on every
  // segment until CWR) and ACKs the next two segments at once (its cwnd may be small).
  if (h.has(flag::kCwr)) {
    ecn_demand_cwr_ = false;
    ack_now_ = true;
  }
  if (ecn == 3) {
    if (!ecn_demand_cwr_) {
      quickacks_ = std::max(quickacks_, 2);
      pingpong_ = false;
    }
    ecn_demand_cwr_ = true;
    ecn_seen_ = true;
  } else if (ecn != 0) {
    ecn_seen_ = true;
  } else if (ecn_seen_) {
    // Not-ECT after ECT: probably a retransmission (Linux's quick-ack mode).
    quickacks_ = std::max(quickacks_, 2);
    pingpong_ = false;
  }
}

void Tcb::ProcessData(Instant now, const TcpHeader& h, wire::Bytes payload, FrameSink& out) {
  const bool can_receive = state_ == TcpState::kEstablished ||
                           state_ == TcpState::kFinWait1 || state_ == TcpState::kFinWait2;
  if (!payload.empty() && can_receive) {
    if (ecn_ok_) EcnReceive(h, rx_ecn_);
    const SeqNum end = h.seq + static_cast<uint32_t>(payload.size());
    if (read_shut_ && orphan() && end > recv_.rcv_nxt()) {
      // RFC 1122 4.2.2.13 and Linux: data for a socket the application closed draws a reset,
      // which Linux builds from the segment (tcp_v4_send_reset: <SEQ=SEG.ACK><CTL=RST>).
      const TcpHeader r = ResetFor(h, payload.size());
      if (host_.Transmit(now, *this, r, 0, 0, false, out)) host_.counters().tcp_resets_out++;
      Fail(now, ECONNRESET);
      return;
    }
    const size_t space = recv_capacity() > recv_.readable() ? recv_capacity() - recv_.readable() : 0;
    bool in_order = false;
    if (host_.memory().over_limit() && recv_.NeedsMemory(h.seq, payload.size(), space, &in_order)) {
      // The stack's memory is at its limit (Linux tcp_try_rmem_schedule failing): a segment
      // that needs new memory is dropped before it is stored, and the peer retransmits it.
      // Out of order it always goes (TCPOFODrop); in order only while the application has
      // data to read, whose reading frees memory: into an empty receive queue it is taken
      // (Linux's sk_forced_mem_schedule), so a connection always makes progress. Linux sends
      // no ACK for either.
      if (!in_order) {
        host_.counters().tcp_ofo_mem_drops++;
        return;
      }
      if (recv_.readable() != 0) {
        host_.counters().tcp_rcvq_drops++;
        host_.ReadinessChanged(*this);  // sk_data_ready: the reader frees the memory
        return;
      }
    }
    const bool had_hole = recv_.has_out_of_order();
    const auto got = recv_.Insert(h.seq, payload, space);
    if (got.in_order != 0) {
      ++unacked_segments_;
      last_data_received_ = now;
      if (payload.size() > rcv_mss_) {
        rcv_mss_ = static_cast<uint16_t>(std::min<size_t>(payload.size(), 65535));
      }
      host_.ReadinessChanged(*this);
      // Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): at least every second full segment;
      // at once in Linux's quick-ack phase (unless the exchange is interactive), when a hole
      // is filled, or with TCP_QUICKACK. A FIN riding on data makes the exchange interactive.
      if (h.has(flag::kFin)) pingpong_ = true;
      const bool quick = quickacks_ > 0 && !pingpong_;
      if (unacked_segments_ >= 2 || quick || had_hole || options.quick_ack || got.out_of_order) {
        ack_now_ = true;
        if (quick) --quickacks_;
      } else if (delack_deadline_.is_never()) {
        delack_deadline_ = now + host_.tcp_config().delayed_ack;
      }
    }
    if (got.out_of_order || got.duplicate) {
      // RFC 5681 4.2: out-of-order data is acknowledged at once (with SACK blocks).
      host_.counters().tcp_ooo_segments_in += got.out_of_order ? 1 : 0;
      // Linux's TCPOFODrop: out-of-order data the reassembly could not hold (here, when every
      // range is in use), so an out-of-order hoard shows in the counters.
      host_.counters().tcp_ooo_dropped += got.no_range ? 1 : 0;
      ack_now_ = true;
    }
    if (got.duplicate && sack_ok_ && h.seq < recv_.rcv_nxt()) {
      // RFC 2883: report the duplicate below RCV.NXT in a D-SACK block.
      dsack_pending_ = true;
      dsack_ = {h.seq, SeqMin(end, recv_.rcv_nxt())};
    }
  }
  if (h.has(flag::kFin) && (state_ == TcpState::kEstablished || state_ == TcpState::kFinWait1 ||
                            state_ == TcpState::kFinWait2 || state_ == TcpState::kSynReceived)) {
    const SeqNum fin_seq = h.seq + static_cast<uint32_t>(payload.size());
    if (fin_seq == recv_.rcv_nxt()) {
      ProcessFin(now, !payload.empty());
    } else if (fin_seq > recv_.rcv_nxt()) {
      ooo_fin_ = true;
      ooo_fin_seq_ = fin_seq;
      ack_now_ = true;
    }
  }
  // A FIN that arrived beyond a hole takes effect once the hole is filled.
  if (ooo_fin_ && !fin_received_ && ooo_fin_seq_ == recv_.rcv_nxt()) ProcessFin(now, false);
}

void Tcb::ProcessFin(Instant now, bool with_data) {
  // RFC 9293 3.10.7.4, eighth: advance RCV.NXT over the FIN and acknowledge it. Linux
  // acknowledges a bare FIN at once and one that came with data after the delayed-ACK time.
  recv_.Reset(recv_.rcv_nxt() + 1);
  fin_received_ = true;
  ooo_fin_ = false;
  // Only the FIN that takes ESTABLISHED to CLOSE-WAIT may wait; in FIN-WAIT the peer is closing
  // too and Linux answers at once (tcp_fin).
  const bool may_delay = state_ == TcpState::kEstablished || state_ == TcpState::kSynReceived;
  if (!with_data || ack_now_ || !may_delay) {
    ack_now_ = true;
    delack_deadline_ = Instant::Never();
  } else if (delack_deadline_.is_never()) {
    delack_deadline_ = now + host_.tcp_config().delayed_ack;
  }
  switch (state_) {
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
      SetState(now, TcpState::kCloseWait);
      break;
    case TcpState::kFinWait1:
      if (fin_acked()) {
        EnterTimeWait(now);
      } else {
        SetState(now, TcpState::kClosing);
      }
      break;
    case TcpState::kFinWait2:
      EnterTimeWait(now);
      break;
    default:
      break;
  }
  host_.ReadinessChanged(*this);
}

void Tcb::EnterTimeWait(Instant now) {
  rto_kind_ = RtoKind::kNone;
  rto_deadline_ = Instant::Never();
  keepalive_deadline_ = Instant::Never();
  delack_deadline_ = Instant::Never();
  tlp_deadline_ = Instant::Never();
  state_deadline_ = now + host_.tcp_config().time_wait;
  send_q_.Clear();
  SetState(now, TcpState::kTimeWait);
}

bool Tcb::TimeWaitAcceptsSyn(const TcpHeader& h) const {
  // Linux tcp_timewait_state_process: a SYN whose sequence number is above RCV.NXT, or whose
  // timestamp is newer than the last one seen, may start a new incarnation.
  if (ts_ok_ && h.options.timestamp) {
    return static_cast<int32_t>(h.options.timestamp->val - ts_recent_) > 0;
  }
  return h.seq > recv_.rcv_nxt();
}

// ---- Application calls --------------------------------------------------------------------

size_t Tcb::SendSpace() const {
  const size_t cap = send_capacity();
  size_t space = send_q_.size() < cap ? cap - send_q_.size() : 0;
  const MemoryBudget& m = host_.memory();
  if (m.limit() != 0) {
    // Linux tcp_wmem_schedule, which charges tcp_mem as the queue grows: a socket queues into
    // memory it holds already and what the limit leaves (so one write cannot take the stack
    // far past it), and one that holds none may always queue a little (tcp_wmem[0] there;
    // here the queue's first, small chunk) to make progress.
    const size_t headroom = m.over_limit() ? 0 : m.limit() - m.allocated();
    const size_t room = send_q_.memory() == 0 ? std::max(headroom, ByteQueue::kSmallChunkSize)
                                              : send_q_.Room() + headroom;
    space = std::min(space, room);
  }
  return space;
}

size_t Tcb::Write(std::span<const std::byte> data, bool more, bool eor) {
  const size_t n = std::min(data.size(), SendSpace());
  const size_t cap = send_capacity();
  if (n < data.size() && n < (send_q_.size() < cap ? cap - send_q_.size() : 0)) {
    host_.counters().tcp_send_mem_limited++;
    send_mem_limited_ = true;
  }
  // Linux tcp_add_write_queue_tail: data entering an empty unsent queue starts the busy
  // chronograph; a write that must wait for room (sk_stream_wait_memory) the sndbuf one.
  if (n != 0 && !(data_end() > snd_max_)) chrono_busy_due_ = true;
  if (n < data.size()) chrono_sndbuf_due_ = true;
  send_q_.Append(data.first(n));
  // MSG_EOR: the record ends here if all of it was queued (Linux marks the skb then); no
  // segment will carry bytes of both sides of the boundary.
  if (eor && n == data.size() && n != 0) {
    if (eor_head_ == eor_.size()) {
      eor_.clear();
      eor_head_ = 0;
    }
    eor_.push_back(data_end());
  }
  // Linux tcp_push: MSG_MORE corks the push this write makes (TCP_NAGLE_CORK in place of the
  // socket's Nagle setting); later pushes (ACKs, the next write) do not hold for it. New data
  // also ends a pending TCP_NAGLE_PUSH (tcp_skb_entail).
  more_hold_ = more;
  push_once_ = false;
  return n;
}

size_t Tcb::Read(std::span<std::byte> out, bool peek) {
  const size_t before = recv_.readable();
  const size_t n = recv_.Read(out, peek);
  if (!peek && n != 0) {
    // Window update: announce a reopened window once it grew by an MSS or half the buffer
    // (RFC 1122 4.2.3.3, receiver-side silly window avoidance).
    const size_t cap = recv_capacity();
    const SeqNum rcv_nxt = recv_.rcv_nxt();
    const size_t advertised = rcv_adv_ > rcv_nxt ? static_cast<size_t>(rcv_adv_ - rcv_nxt) : 0;
    const size_t now_free = cap > recv_.readable() ? cap - recv_.readable() : 0;
    if (now_free >= advertised + std::min<size_t>(cap / 2, rcv_mss_) &&
        (before >= cap / 2 || advertised < rcv_mss_)) {
      ack_now_ = true;
    }
  }
  return n;
}

void Tcb::ShutdownWrite(Instant now) {
  if (write_shut_) return;
  write_shut_ = true;
  fin_seq_ = data_end();
  switch (state_) {
    case TcpState::kEstablished:
      fin_queued_ = true;
      SetState(now, TcpState::kFinWait1);
      break;
    case TcpState::kCloseWait:
      fin_queued_ = true;
      SetState(now, TcpState::kLastAck);
      break;
    case TcpState::kSynReceived:
      fin_queued_ = true;
      break;
    default:
      break;
  }
}

void Tcb::Abort(Instant now, FrameSink* out, int error) {
  if (out != nullptr && (IsSynchronized(state_) || state_ == TcpState::kSynReceived) &&
      state_ != TcpState::kTimeWait) {
    TcpHeader r;
    r.src_port = tuple.local.port;
    r.dst_port = tuple.remote.port;
    r.seq = snd_max_;
    r.ack = recv_.rcv_nxt();
    r.flags = flag::kRst | flag::kAck;
    host_.Transmit(now, *this, r, 0, 0, false, *out);
    host_.counters().tcp_resets_out++;
  }
  Fail(now, error);
}

void Tcb::Fail(Instant now, int error) {
  if (error != 0) error_ = error;
  done_ = true;
  read_shut_ = true;
  write_shut_ = true;
  send_q_.Clear();
  rto_kind_ = RtoKind::kNone;
  rto_deadline_ = Instant::Never();
  tlp_deadline_ = Instant::Never();
  delack_deadline_ = Instant::Never();
  keepalive_deadline_ = Instant::Never();
  state_deadline_ = Instant::Never();
  SetState(now, TcpState::kClosed);
  host_.ReadinessChanged(*this);
}

void Tcb::IcmpError(Instant now, int error, bool hard, uint16_t next_hop_mtu) {
  if (next_hop_mtu != 0) {
    // RFC 1191 path MTU discovery; 552 is Linux's floor (min_pmtu), 68 RFC 791's. As on
    // Linux, the path's MTU is learnt whatever IP_MTU_DISCOVER says (the route keeps it and
    // tcp_current_mss follows it from the next segment on).
    const uint16_t mtu = std::max<uint16_t>(next_hop_mtu, 552);
    ClampMss(static_cast<uint16_t>(mtu - 40));
    // Linux tcp_v4_mtu_reduced: only a socket that discovers the path MTU resends at once
    // (tcp_simple_retransmit); with IP_PMTUDISC_DONT (or INTERFACE, OMIT) the retransmission
    // timer recovers what was lost.
    if (!AcceptsPathMtu(options.pmtu_discovery)) return;
    if (snd_una_ < snd_max_) {
      snd_nxt_ = snd_una_;  // resend what the smaller path dropped
    }
    return;
  }
  // RFC 5927 / RFC 1122 4.2.3.9: hard errors abort only a connection still opening; otherwise
  // errors are soft and reported if the connection later times out.
  if (hard && state_ == TcpState::kSynSent) {
    Fail(now, error);
    return;
  }
  soft_error_ = error;
}

// ---- Reporting ----------------------------------------------------------------------------

uint32_t Tcb::Readiness() const {
  // As Linux's tcp_poll.
  if (state_ == TcpState::kListen) return accept_queue.empty() ? 0 : ready::kReadable;
  uint32_t mask = 0;
  const bool rd_shut = read_shut_ || fin_received_ || done_;
  const bool wr_shut = write_shut_ || done_;
  if ((rd_shut && wr_shut) || state_ == TcpState::kClosed) mask |= ready::kHangup;
  if (rd_shut) mask |= ready::kReadable | ready::kReadHangup;
  if (state_ != TcpState::kSynSent && state_ != TcpState::kSynReceived) {
    if (recv_.readable() != 0) mask |= ready::kReadable;
    if (!wr_shut) {
      const size_t space = SendSpace();
      if (space > 0 && space >= send_q_.size() / 2) mask |= ready::kWritable;
    } else {
      mask |= ready::kWritable;
    }
  }
  if (error_ != 0 || zc_pending_) mask |= ready::kError;  // Linux: sk_err or the error queue
  return mask;
}

void Tcb::FillInfo(SocketInfo& info) const {
  info.state = state_;
  info.local = tuple.local;
  info.remote = tuple.remote;
  info.pending_error = error_;
  info.readable_bytes = recv_.readable();
  info.unsent_bytes = send_q_.size();
  info.send_space = SendSpace();
  info.listening = state_ == TcpState::kListen;
  info.connecting = state_ == TcpState::kSynSent || state_ == TcpState::kSynReceived;
  // Linux's getpeername rule: every state but CLOSED, LISTEN and SYN-SENT has a peer.
  info.connected = state_ != TcpState::kClosed && state_ != TcpState::kListen &&
                   state_ != TcpState::kSynSent;
  info.ended = state_ == TcpState::kClosed && tuple.remote.port != 0;
  info.mss = snd_mss_;
  info.srtt = rtt_.srtt();
  info.rttvar = rtt_.rttvar();
  info.rto = rtt_.rto();
  info.cwnd = cwnd_;
  info.ssthresh = ssthresh_;
  info.snd_wscale = snd_wscale_;
  info.rcv_wscale = rcv_wscale_;
  info.sack_enabled = sack_ok_;
  info.timestamps_enabled = ts_ok_;
  info.retransmits = retransmits_;
  // Linux's tcp_set_ca_state: loss after a timeout, recovery, disorder while duplicate ACKs
  // or SACKed data have been seen without recovery, open otherwise.
  info.ca_state = rto_recovery_ ? 4 : in_recovery_ ? 3 : cwr_ ? 2
                 : (dupacks_ > 0 || sacked_bytes() > 0) ? 1 : 0;
  info.ecn_enabled = ecn_ok_;
  const uint32_t mss = snd_mss_ == 0 ? 1 : snd_mss_;
  if (!tx_.empty()) {
    for (uint32_t id = tx_.first_id(); id != tx_.end_id(); ++id) {
      const TxRecords::Record& r = tx_.at(id);
      ++info.unacked_segments;
      if (r.flags & TxRecords::kSacked) ++info.sacked_segments;
      if ((r.flags & TxRecords::kLost) && !(r.flags & TxRecords::kSacked)) ++info.lost_segments;
      if (r.flags & TxRecords::kRetrans) ++info.retrans_segments;
    }
  } else {
    info.unacked_segments = static_cast<uint32_t>((FlightSize() + mss - 1) / mss);
  }
  info.reordering = static_cast<uint32_t>(reordering_);
  info.reord_seen = reord_seen_;
  info.probes = probes_;
  info.backoff = rtt_.backoff();
  // Linux clamps advmss to TCP_MAXSEG (tcp_sync_mss / tcp_advertise_mss).
  info.advmss = options.max_segment != 0 ? std::min(local_mss, options.max_segment) : local_mss;
  info.rcv_mss = rcv_mss_;
  // Linux starts tcpi_last_data_recv at the handshake (icsk_ack.lrcvtime).
  info.last_data_received = last_data_received_ > established_at_ ? last_data_received_ : established_at_;
  info.chrono = chrono_stat_;
  info.chrono_running = chrono_type_;
  info.chrono_since = chrono_start_;
}

void Tcb::ChronoSet(Instant now, uint8_t kind) {
  if (chrono_type_ != kChronoNone) chrono_stat_[chrono_type_ - 1u] += now - chrono_start_;
  chrono_start_ = now;
  chrono_type_ = kind;
}

void Tcb::ChronoStop(Instant now, uint8_t kind) {
  // Linux tcp_chrono_stop: with nothing queued at all every chronograph stops; otherwise only
  // the running one's condition ended, and busy resumes.
  if (send_q_.size() == 0) {
    ChronoSet(now, kChronoNone);
  } else if (kind == chrono_type_) {
    ChronoSet(now, kChronoBusy);
  }
}

}  // namespace shake
