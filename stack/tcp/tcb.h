// Tcb: one TCP connection's control block and its state machine (RFC 9293 section 3.10).
//
// Read first: RFC 9293 (the protocol), RFC 5961 (blind-attack defences), RFC 7323 (window
// scale, timestamps, PAWS), RFC 6298 (the retransmission timer), RFC 5681 and RFC 6582
// (congestion control, NewReno), RFC 2018 and RFC 6675 (SACK and SACK-based recovery),
// RFC 8985 (RACK-TLP: time-based loss detection and tail loss probes), RFC 9438 (CUBIC, in
// congestion.h), RFC 2883 and RFC 3522 (D-SACK and Eifel: detecting
// spurious retransmissions and undoing their window reduction),
// RFC 1122 (delayed ACK, keepalive, zero-window probes), RFC 6528 (initial sequence numbers).
//
// A Tcb never touches a device or a clock. It is driven by its host (Stack::Impl) through
// three entry points, each given the current time and a FrameSink:
//   SegmentArrives  - a segment for this connection (RFC 9293 3.10.7)
//   Output          - send whatever the state allows: SYN, data, FIN, pending ACKs
//   OnTimer         - retransmission, persist, delayed ACK, keepalive, TIME-WAIT, FIN-WAIT-2
// and reports back through TcpHost: segments to put on the wire, state changes and readiness.
// tcb.cc holds the arriving half and the application calls; tcb_send.cc the sending half (loss
// detection, output, timers).
// Where behaviour follows Linux rather than the RFC text, the code says so.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
#include <vector>

#include "stack/base/addr.h"
#include "stack/base/seqnum.h"
#include "stack/base/time.h"
#include "stack/counters.h"
#include "stack/stack.h"
#include "stack/tcp/byte_queue.h"
#include "stack/tcp/congestion.h"
#include "stack/tcp/memory_budget.h"
#include "stack/tcp/recv_buffer.h"
#include "stack/tcp/rtt.h"
#include "stack/tcp/tx_records.h"
#include "stack/wire/tcp.h"

namespace shake {

class Tcb;

// A FIFO of slot indices (a listener's accept queue): pop_front is O(1) amortized, where erasing
// the front of a vector moved the whole queue (up to the 4096-entry backlog) on every accept().
class SlotQueue {
 public:
  explicit SlotQueue(std::pmr::memory_resource* mem) : v_(mem) {}
  bool empty() const { return head_ == v_.size(); }
  size_t size() const { return v_.size() - head_; }
  uint32_t front() const { return v_[head_]; }
  void push_back(uint32_t x) { v_.push_back(x); }
  void pop_front() {
    if (++head_ == v_.size()) {
      v_.clear();
      head_ = 0;
    } else if (head_ >= 64 && 2 * head_ >= v_.size()) {
      v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  void clear() {
    v_.clear();
    head_ = 0;
  }

 private:
  std::pmr::vector<uint32_t> v_;
  size_t head_ = 0;
};

// What a Tcb needs from its host.
class TcpHost {
 public:
  virtual ~TcpHost() = default;
  virtual const TcpConfig& tcp_config() const = 0;
  virtual Counters& counters() = 0;
  // Builds and sends one segment: header `h` plus `payload_len` bytes of tcb.send_queue() taken
  // from `payload_offset`. Returns false when the device had no room.
  virtual bool Transmit(Instant now, Tcb& tcb, const wire::TcpHeader& h, size_t payload_offset,
                        size_t payload_len, bool retransmit, FrameSink& out) = 0;
  // Called after every state change (the host maintains its tables and frees CLOSED orphans).
  virtual void StateChanged(Instant now, Tcb& tcb, TcpState from) = 0;
  virtual void ReadinessChanged(Tcb& tcb) = 0;
  // A passive child's handshake completed: may it join its listener's accept queue? (Linux drops
  // the final ACK while the queue is full, and the child keeps retransmitting its SYN-ACK.)
  virtual bool CanEstablish(Tcb& tcb) = 0;
  // The millisecond clock behind TSval (RFC 7323 section 5.4).
  virtual uint32_t TimestampClock(Instant now) const = 0;
  // The stack-wide account the control block's memory is charged to (TcpConfig::memory_limit).
  virtual const MemoryBudget& memory() const = 0;
};

// What the SYN (or SYN-ACK) we received offered.
struct PeerSyn {
  SeqNum irs;
  uint16_t window = 0;
  wire::TcpOptions options;
  bool ecn = false;  // it asked for ECN (ECE and CWR, RFC 3168 6.1.1) and the stack accepts
};

class Tcb {
 public:
  Tcb(TcpHost& host, std::pmr::memory_resource* mem);
  Tcb(const Tcb&) = delete;
  Tcb& operator=(const Tcb&) = delete;

  // ---- identity and bookkeeping used by the host ----
  uint32_t index = 0;        // slot in the host's table
  uint32_t generation = 0;   // bumped when the slot is reused
  FourTuple tuple;
  bool in_table = false;     // present in the host's 4-tuple map
  bool has_socket = false;   // the application holds a SocketId for it (otherwise an orphan)
  bool explicitly_bound = false;
  uint32_t listener = 0;     // for a passive child: 1 + the listener's index; 0 otherwise
  bool in_accept_queue = false;
  Instant scheduled = Instant::Never();  // deadline the host's timer heap holds for us
  bool dirty = false;                    // queued for output at the next Poll
  bool reaping = false;                  // queued to be freed at the end of the current call
  bool memory_waiter = false;            // in the host's list of writers the memory limit held
  SocketOptions options;
  uint16_t local_mss = 1460;  // the MSS we advertise: the device MTU less 40

  // ---- listener ----
  int backlog = 0;
  SlotQueue accept_queue;  // child indices, oldest first
  uint32_t syn_queue_len = 0;
  // When the SYN queue last overflowed (a cookie went out): only then are ACKs checked for a
  // cookie (Linux tcp_synq_no_recent_overflow).
  bool syn_queue_overflowed = false;
  Instant last_syn_queue_overflow;

  TcpState state() const { return state_; }
  bool orphan() const { return !has_socket; }

  // ---- opening ----
  // Active open: CLOSED -> SYN-SENT; the SYN goes out with the next Output.
  void OpenActive(Instant now, SeqNum iss, uint32_t ts_offset);
  // Passive open of a child from a listener's SYN: -> SYN-RECEIVED with a SYN-ACK to send.
  void OpenPassive(Instant now, SeqNum iss, uint32_t ts_offset, const PeerSyn& syn);
  // Passive open from a valid SYN cookie (RFC 4987 3.6): SYN-RECEIVED with the SYN-ACK (whose
  // ISS was the cookie) already sent and nothing to retransmit; `syn` holds what the cookie and
  // the final ACK carried. The final ACK is then processed as usual.
  void OpenFromCookie(Instant now, SeqNum iss, uint32_t ts_offset, const PeerSyn& syn);
  // The window scale we offer for a receive buffer of `capacity` bytes (RFC 7323 2.2): the
  // smallest shift that lets the window field cover it, at most 14.
  static uint8_t WindowScaleFor(size_t capacity);
  void MakeListener(int backlog_limit);

  // ---- the three entry points ----
  // `ecn`: the IP header's ECN field (RFC 3168 5: 0 not-ECT, 1 or 2 ECT, 3 CE).
  void SegmentArrives(Instant now, const wire::TcpHeader& h, wire::Bytes payload,
                      FrameSink& out, uint8_t ecn = 0);
  void Output(Instant now, FrameSink& out);
  void OnTimer(Instant now, FrameSink& out);
  Instant NextDeadline() const;

  // ---- application calls ----
  size_t SendSpace() const;
  // True once after a Write that the stack's memory limit cut short (the host wakes the
  // socket when memory is freed).
  bool TakeMemoryLimited() {
    const bool r = send_mem_limited_;
    send_mem_limited_ = false;
    return r;
  }
  // Queues data; `more` is MSG_MORE: the output this write triggers holds a partial segment.
  // `eor`: MSG_EOR, the data ends a record (no segment crosses its end).
  size_t Write(std::span<const std::byte> data, bool more = false, bool eor = false);
  // TCP_NODELAY set, or TCP_CORK cleared with it on (Linux's TCP_NAGLE_PUSH): the next output
  // sends what Nagle or cork holds, until new data is written.
  void RequestPush() { push_once_ = true; }
  size_t Read(std::span<std::byte> out, bool peek);
  void ShutdownWrite(Instant now);  // queue a FIN
  void ShutdownRead() { read_shut_ = true; }
  // RST to the peer and CLOSED (abortive close, linger 0, close with unread data).
  void Abort(Instant now, FrameSink* out, int error);
  // Abortive close requested without a sink at hand: the next Output sends RST and closes.
  void RequestAbort() { abort_pending_ = true; }
  // The application let go of the socket: an orphan in FIN-WAIT-2 gets a deadline.
  void Orphaned(Instant now);
  // Linux tcp_check_oom's memory half: an orphan that holds more than a minimum of send queue
  // while the stack's memory is at its limit is reset (at close and at its timers).
  bool OrphanOutOfMemory() const {
    return orphan() && host_.memory().over_limit() &&
           send_q_.memory() > ByteQueue::kSmallChunkSize;
  }
  // Socket options changed: timers that depend on them start over.
  void OptionsChanged() { keepalive_deadline_ = Instant::Never(); }
  // An ICMP error for this connection (RFC 5927 checks already done by the host).
  void IcmpError(Instant now, int error, bool hard, uint16_t next_hop_mtu);
  // The TIME-WAIT reuse rule (Linux tcp_timewait_state_process): a new SYN may take over.
  bool TimeWaitAcceptsSyn(const wire::TcpHeader& h) const;
  SeqNum time_wait_next_iss() const { return snd_nxt_ + 65535 + 2; }

  uint32_t Readiness() const;
  void FillInfo(SocketInfo& info) const;
  int TakeError() {
    const int e = error_;
    error_ = 0;
    return e;
  }
  int pending_error() const { return error_; }
  // A write the send buffer turned (partly) away waits for the next output to note it.
  bool chrono_due() const { return chrono_busy_due_ || chrono_sndbuf_due_; }
  // MSG_ZEROCOPY bookkeeping (Stack::SendFlags::zerocopy): numbers a completed send and keeps
  // the range not yet reported.
  void ZerocopySent() {
    if (!zc_pending_) zc_lo_ = zc_next_;
    zc_hi_ = zc_next_++;
    zc_pending_ = true;
  }
  std::optional<ZerocopyDone> TakeZerocopyDone() {
    if (!zc_pending_) return std::nullopt;
    zc_pending_ = false;
    return ZerocopyDone{zc_lo_, zc_hi_};
  }
  size_t readable() const { return recv_.readable(); }
  bool fin_received() const { return fin_received_; }
  bool read_shut() const { return read_shut_; }
  bool write_shut() const { return write_shut_; }
  bool ever_connected() const { return ever_connected_; }
  bool done() const { return done_; }
  const ByteQueue& send_queue() const { return send_q_; }
  SeqNum iss() const { return iss_; }
  SeqNum snd_una() const { return snd_una_; }
  SeqNum snd_max() const { return snd_max_; }
  uint16_t mss() const { return snd_mss_; }
  void ClampMss(uint16_t mtu_mss);

  // Sends RST for a segment on a connection that cannot take it (the host's helper).
  static wire::TcpHeader ResetFor(const wire::TcpHeader& h, size_t payload_len);
  // True while the segment being transmitted is an RFC 5961 challenge ACK (for tracing).
  bool sending_challenge_ack() const { return sending_challenge_ack_; }
  // The IP ECN codepoint for the segment being transmitted (RFC 3168: ECT(0) on new data).
  uint8_t sending_ecn() const { return tx_ecn_; }
  // The IP header's TOS byte for it: IP_TOS's DSCP bits and that codepoint.
  uint8_t sending_tos() const { return static_cast<uint8_t>((options.tos & 0xfc) | tx_ecn_); }
  // Whether it goes out with DF (IP_MTU_DISCOVER; Linux ip_dont_fragment).
  bool sending_dont_fragment() const { return SendsDontFragment(options.pmtu_discovery); }
  bool ecn_ok() const { return ecn_ok_; }

 private:
  // State changes go through here so the host and observers hear of each.
  void SetState(Instant now, TcpState s);
  void EnterTimeWait(Instant now);
  // RFC 9293 3.10.7.3: SYN-SENT.
  void SynSentArrives(Instant now, const wire::TcpHeader& h, FrameSink& out);
  // RFC 9293 3.10.7.4: everything synchronized, and SYN-RECEIVED.
  bool CheckSequence(Instant now, const wire::TcpHeader& h, wire::Bytes payload,
                     FrameSink& out);
  bool ProcessAck(Instant now, const wire::TcpHeader& h, size_t payload_len, FrameSink& out);
  // Takes the RTT sample the ACK being processed offers (ack_info_, the timestamp echo).
  void SampleRtt(Instant now, const wire::TcpHeader& h, bool acked);
  // The RTT the segment's timestamp echo measures, or a negative duration when it has none.
  Duration TimestampRtt(Instant now, const wire::TcpHeader& h) const;
  void ProcessData(Instant now, const wire::TcpHeader& h, wire::Bytes payload, FrameSink& out);
  void ProcessFin(Instant now, bool with_data);
  Duration FinWait2Timeout() const;
  void ApplyPeerOptions(const wire::TcpOptions& o, bool is_syn);
  void NewAck(Instant now, const wire::TcpHeader& h, SeqNum ack);
  void UpdateSackScoreboard(const wire::TcpOptions& o);
  void EnterRecovery(Instant now);
  // RFC 6937 proportional rate reduction, as Linux's tcp_cwnd_reduction: during SACK recovery
  // each ACK sets cwnd to what is in flight plus what PRR lets out for the `delivered`
  // segments it reported (`newly_lost`: segments it found lost; `advanced`: SND.UNA moved).
  void CwndReduction(uint32_t delivered, uint32_t newly_lost, bool advanced);
  // RFC 3168 6.1.2: an ECE reduces cwnd as a loss would, without retransmitting (Linux
  // tcp_enter_cwr: the CWR state, PRR until what was in flight is acknowledged).
  void EnterCwr();
  // ECN on arriving data: CWR ends our ECE echo; CE starts it (RFC 3168 6.1.3).
  void EcnReceive(const wire::TcpHeader& h, uint8_t ecn);
  // Records cwnd use after sending (Linux tcp_cwnd_validate), for GrowWindow.
  void ValidateCwnd(bool cwnd_limited);
  // TCP_INFO's chronographs, as Linux's tcp_chrono_start/stop (SocketInfo::chrono).
  enum : uint8_t { kChronoNone = 0, kChronoBusy = 1, kChronoRwnd = 2, kChronoSndbuf = 3 };
  void ChronoSet(Instant now, uint8_t kind);
  void ChronoStart(Instant now, uint8_t kind) {
    if (kind > chrono_type_) ChronoSet(now, kind);
  }
  void ChronoStop(Instant now, uint8_t kind);
  // A loss was detected: ssthresh from the congestion controller (RFC 5681 / RFC 9438).
  uint32_t CongestionEvent(bool timeout);
  // Newly acknowledged bytes outside recovery grow cwnd (RFC 5681 3.1, RFC 9438 4).
  void GrowWindow(Instant now, uint32_t acked);

  // Tail loss probes (RFC 8985 section 7).
  void ScheduleLossProbe(Instant now);
  bool LossProbeAllowed() const;
  // Segments in flight (Linux packets_out): the transmit records, or the FIN sent alone.
  uint32_t PacketsOut() const;
  void LossProbeTimeout(Instant now, FrameSink& out);
  void ProcessLossProbeAck(const wire::TcpHeader& h, bool advances, bool dup,
                           const wire::SackBlock* dsack);

  // Loss detection and undo (SACK connections keep a record per segment in tx_).
  void NoteSent(Instant now, SeqNum s, size_t n);
  void MarkSackedRecords(Instant now, const wire::TcpOptions& o, uint8_t first);
  void RackDelivered(Instant now, const TxRecords::Record& r);
  void RackDetectLoss(Instant now);
  void CheckReordering();
  Duration RackReoWnd() const;
  void ProcessDsack(const wire::SackBlock& b);
  void InitUndo();
  bool PacketDelayed(const wire::TcpHeader& h) const;
  void Undo();
  bool RetransmitRecord(Instant now, uint32_t id, FrameSink& out);

  // Output helpers.
  bool SendSegment(Instant now, uint8_t flags, SeqNum seq, size_t len, bool retransmit,
                   FrameSink& out);
  void SendAck(Instant now, FrameSink& out);
  // A duplicate ACK under RFC 5961 section 7's rate limit; `rfc5961`: it answers a RST (3.2),
  // a SYN (4.2) or an unacceptable ACK (5.2) as a challenge, rather than an out-of-window or
  // PAWS-failed segment (RFC 9293 3.10.7.4, RFC 7323 5.3), which Linux limits the same way.
  void SendChallengeAck(Instant now, FrameSink& out, bool rfc5961);
  bool SendData(Instant now, FrameSink& out);
  bool SendSackRecovery(Instant now, FrameSink& out);
  void SendProbe(Instant now, FrameSink& out);  // zero-window and keepalive probe
  // Linux tcp_write_wakeup: the probe timer found the window open and data held back with
  // nothing in flight (cork, MSG_MORE): one segment of it goes.
  bool WriteWakeup(Instant now, FrameSink& out);
  uint16_t AdvertisedWindow(bool syn);
  wire::TcpOptions OptionsFor(Instant now, uint8_t flags);

  void ArmRetransmit(Instant now);
  void RetransmitTimeout(Instant now, FrameSink& out);
  void Fail(Instant now, int error);  // -> CLOSED with a pending error, no RST

  size_t FlightSize() const { return static_cast<size_t>(snd_max_ - snd_una_); }
  SeqNum data_end() const { return snd_una_ + static_cast<uint32_t>(send_q_.size()); }
  size_t recv_capacity() const;
  size_t send_capacity() const;
  // Linux tcp_sndbuf_expand: without SO_SNDBUF, the send buffer grows with cwnd (from the
  // initial window's worth at establishment) up to TcpConfig::send_buffer, and never shrinks.
  void ExpandSendBuffer();
  uint32_t sacked_bytes() const;
  SeqNum highest_sacked() const;
  // The next unSACKed byte at or after `s`, and the end of that hole.
  bool NextHole(SeqNum from, SeqNum limit, SeqNum* start, SeqNum* end) const;

  TcpHost& host_;
  TcpState state_ = TcpState::kClosed;

  // Send sequence space (RFC 9293 3.3.1). snd_max_ is the highest sequence number sent;
  // snd_nxt_ falls back to snd_una_ after a retransmission timeout (go-back-N).
  SeqNum iss_;
  SeqNum snd_una_;
  SeqNum snd_nxt_;
  SeqNum snd_max_;
  SeqNum snd_sml_;            // end of the last small segment sent (Minshall's Nagle)
  SeqNum snd_wl1_;
  SeqNum snd_wl2_;
  uint32_t snd_wnd_ = 0;      // scaled, in bytes
  uint32_t max_snd_wnd_ = 0;  // RFC 5961 5.2's MAX.SND.WND
  ByteQueue send_q_;          // [snd_una, snd_una + size) not yet acknowledged
  // Ends of records written with MSG_EOR, ascending, from eor_head_ (those acknowledged are
  // skipped); empty unless the application uses MSG_EOR.
  std::pmr::vector<SeqNum> eor_;
  size_t eor_head_ = 0;
  SeqNum RecordEnd(SeqNum s) const;
  bool fin_queued_ = false;   // the application shut the write side
  SeqNum fin_seq_;            // our FIN's sequence number, once fin_queued_
  bool fin_acked() const { return fin_queued_ && snd_una_ > fin_seq_; }

  // Receive sequence space.
  SeqNum irs_;
  RecvBuffer recv_;
  SeqNum rcv_adv_;            // right edge of the window we advertised
  SeqNum last_ack_sent_;
  bool fin_received_ = false;
  bool ooo_fin_ = false;      // a FIN beyond a hole, at ooo_fin_seq_
  SeqNum ooo_fin_seq_;

  // Negotiated options.
  uint16_t peer_mss_ = 536;   // RFC 9293 3.7.1: 536 when the peer sent none
  uint16_t snd_mss_ = 536;    // payload per segment we send, after option overhead
  uint16_t rcv_mss_ = 536;    // estimate of the peer's segment size
  uint8_t snd_wscale_ = 0;
  uint8_t rcv_wscale_ = 0;
  bool ws_ok_ = false;
  bool sack_ok_ = false;
  bool ts_ok_ = false;
  uint32_t ts_offset_ = 0;
  uint32_t ts_recent_ = 0;
  bool want_ws_ = true, want_sack_ = true, want_ts_ = true;

  size_t snd_buf_ = 0;  // the autotuned send buffer (ExpandSendBuffer); zero before established

  // Congestion control (RFC 5681, RFC 6582, RFC 6675).
  uint32_t cwnd_ = 0;
  uint32_t ssthresh_ = 0x7fffffff;
  CongestionController cc_;   // slow start and congestion avoidance growth, loss response
  // Cwnd validation (RFC 7661 in Linux's form): the most segments in flight during the last
  // window of data, the SND.NXT that window ends at, and whether cwnd limited the sender.
  uint32_t max_packets_out_ = 0;
  // The last time data left (Linux lsndtime), for the restart after idle.
  Instant last_data_sent_;
  bool data_sent_once_ = false;
  Instant established_at_ = Instant::FromNanos(std::numeric_limits<int64_t>::min() / 2);
  SeqNum cwnd_usage_seq_;
  bool is_cwnd_limited_ = false;
  int dupacks_ = 0;
  bool in_recovery_ = false;
  SeqNum recover_;
  // PRR's state (RFC 6937 3), in segments: cwnd when recovery began (RecoverFS's stand-in,
  // Linux prior_cwnd), segments delivered since, segments sent since.
  uint32_t prr_prior_cwnd_ = 0;
  uint32_t prr_delivered_ = 0;
  uint32_t prr_out_ = 0;
  SeqNum high_rxt_;
  struct Sacked {
    SeqNum left, right;
  };
  std::array<Sacked, 16> scoreboard_{};
  size_t scoreboard_len_ = 0;

  // Per-segment transmit records (SACK connections only): RACK and the pipe estimate.
  TxRecords tx_;
  // RACK state (RFC 8985 6.1): the most recently sent segment known delivered.
  struct Rack {
    bool valid = false;
    Instant xmit_ts;
    SeqNum end_seq;
    Duration rtt;
    bool reordering_seen = false;
    int reo_wnd_mult = 1;        // RFC 8985 6.2 step 4
    int reo_wnd_persist = 16;
    bool dsack_round_active = false;
    SeqNum dsack_round;
  };
  Rack rack_;
  bool has_min_rtt_ = false;
  Duration min_rtt_;
  Instant reo_deadline_ = Instant::Never();  // RACK reordering timer (RFC 8985 6.3)
  bool force_rexmit_ = false;        // recovery just began: its first retransmission is due
  bool rto_recovery_ = false;        // recovering after a timeout (Linux's TCP_CA_Loss)
  bool fin_rexmit_pending_ = false;  // the timeout also owes the peer our FIN
  // Reordering degree in segments (Linux tp->reordering): the duplicate-ACK threshold for
  // connections without SACK, raised when a recovery proves spurious; at most kMaxReordering.
  int reordering_ = 3;
  int max_dupacks_ = 0;
  // Undo of a spurious recovery (RFC 2883 with Linux's undo_retrans counting; RFC 3522).
  bool undo_valid_ = false;
  SeqNum undo_marker_;
  int undo_retrans_ = -1;
  uint32_t prior_cwnd_ = 0;
  uint32_t prior_ssthresh_ = 0;
  CongestionController::Saved prior_cc_;
  bool retrans_stamp_set_ = false;
  uint32_t retrans_stamp_ = 0;       // TSval of the episode's first retransmission

  // RTT (RFC 6298) with Karn's rule, measured as Linux does: from the send time of the data
  // an ACK newly acknowledges or SACKs (tx_), else from the timestamp echo.
  RttEstimator rtt_;
  Instant rtt_start_;  // when the SYN or SYN-ACK was first sent
  struct AckInfo {      // what the ACK being processed delivered (an RTT sample, PRR)
    bool seq_valid = false;      // a never-resent segment was newly acknowledged...
    Instant first_acked;         // ...the oldest of them sent then
    bool retrans_acked = false;  // a segment sent more than once was acknowledged
    bool sack_valid = false;     // a never-resent segment was newly SACKed...
    Instant first_sacked;
    uint32_t delivered = 0;      // segments newly acknowledged or SACKed (Linux's delivered)
    uint32_t delivered_bytes = 0;  // and their bytes
    uint32_t lost_before = 0;    // tx_.lost_marked() before the ACK
    SeqNum prior_fack;           // the highest SACKed byte before it (SND.UNA when none)
    bool reordered = false;      // it delivered a never-resent segment below prior_fack...
    SeqNum reord_low;            // ...the lowest one starting here
  };
  AckInfo ack_info_;

  // Timers.
  enum class RtoKind : uint8_t { kNone, kRetransmit, kPersist };
  RtoKind rto_kind_ = RtoKind::kNone;
  Instant rto_deadline_ = Instant::Never();
  Instant delack_deadline_ = Instant::Never();
  // Tail loss probe (RFC 8985 7): the probe timeout, and the episode of the probe sent (at most
  // one probe until it is acknowledged; TLP.end_seq in the RFC, Linux's tlp_high_seq).
  Instant tlp_deadline_ = Instant::Never();
  bool tlp_active_ = false;
  bool tlp_is_retrans_ = false;
  SeqNum tlp_start_;  // the probe's first byte
  SeqNum tlp_end_;    // SND.NXT after the probe
  Instant keepalive_deadline_ = Instant::Never();
  Instant state_deadline_ = Instant::Never();  // TIME-WAIT, orphan FIN-WAIT-2
  int retries_ = 0;
  int probes_ = 0;
  Instant first_retransmit_;  // for TCP_USER_TIMEOUT
  Instant last_received_;
  Instant last_oow_ack_;      // RFC 5961 rate limit (Linux: per socket, tcp_invalid_ratelimit)
  bool oow_ack_sent_ = false;

  // ACK policy.
  bool ack_now_ = false;
  uint32_t unacked_segments_ = 0;
  int quickacks_ = 0;
  // Linux's interactive ("pingpong") mode: we answered data quickly with data, so ACKs wait for
  // the delayed-ACK timer and ride on the next reply.
  bool pingpong_ = false;
  Instant last_data_received_ = Instant::FromNanos(std::numeric_limits<int64_t>::min() / 2);
  // A D-SACK block (RFC 2883) reporting duplicate data, sent with the next ACK.
  bool dsack_pending_ = false;
  wire::SackBlock dsack_{};

  // Application-facing.
  int error_ = 0;
  int soft_error_ = 0;
  bool read_shut_ = false;
  bool write_shut_ = false;
  bool ever_connected_ = false;
  bool done_ = false;  // closed for good (reset, timeout, or the close finished)
  uint64_t retransmits_ = 0;
  bool send_syn_ = false;  // a SYN or SYN-ACK is due
  bool more_hold_ = false;  // MSG_MORE: the pending output holds a partial segment
  bool push_once_ = false;  // TCP_NAGLE_PUSH: the next output holds nothing back
  std::array<Duration, 3> chrono_stat_{};  // finished periods of each chronograph kind
  Instant chrono_start_;
  uint8_t chrono_type_ = kChronoNone;
  // Set by Write (which has no clock) for the next SendData: data came into an empty unsent
  // queue (busy starts), or the send buffer turned a write away (sndbuf-limited starts).
  bool chrono_busy_due_ = false;
  bool chrono_sndbuf_due_ = false;
  bool sending_challenge_ack_ = false;
  // RFC 3168 ECN (Linux ecn_flags): negotiated; our SYN asked for it; we owe the peer ECE
  // until its CWR (a CE mark arrived); CWR goes on our next new data (we reduced cwnd); in
  // the CWR state (an ECE reduced cwnd, until SND.UNA passes cwr_high_).
  bool ecn_ok_ = false;
  bool syn_asked_ecn_ = false;
  bool ecn_demand_cwr_ = false;
  bool ecn_queue_cwr_ = false;
  bool ecn_seen_ = false;  // an ECT or CE segment arrived (Linux TCP_ECN_SEEN)
  bool cwr_ = false;
  SeqNum cwr_high_;
  uint8_t tx_ecn_ = 0;
  uint32_t zc_next_ = 0;  // the number the next MSG_ZEROCOPY send gets
  uint32_t zc_lo_ = 0;    // the completed range not yet reported, while zc_pending_
  uint32_t zc_hi_ = 0;
  bool zc_pending_ = false;
  uint32_t reord_seen_ = 0;  // tcpi_reord_seen
  uint8_t rx_ecn_ = 0;  // the ECN field of the segment being processed
  bool from_cookie_ = false;  // opened by OpenFromCookie: the SYN-ACK's send time is unknown
  bool abort_pending_ = false;
  bool send_mem_limited_ = false;  // the last Write was cut short by the memory limit
};

}  // namespace shake
