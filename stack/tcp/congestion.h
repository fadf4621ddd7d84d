// CongestionController: how the sender's congestion window grows and shrinks.
//
// Read first: RFC 5681 (slow start, congestion avoidance, the loss response), RFC 3465
// (appropriate byte counting), RFC 9438 (CUBIC). Loss *detection* (RACK, dupthresh, the RTO)
// and the recovery episodes themselves stay in the Tcb; it asks this class two questions:
//   OnAck            - newly acknowledged bytes outside recovery: how much does cwnd grow?
//   OnCongestionEvent - a loss was detected (fast recovery, a tail loss probe repairing a loss,
//                       or a timeout): what is the new ssthresh?
// and saves/restores the controller's state when a reduction proves spurious (RFC 9438 4.9).
// Windows are in bytes as the Tcb keeps them; CUBIC's W values are in segments (doubles), as
// RFC 9438 writes its equations. Time comes only from the `now` arguments.
#pragma once

#include <cstdint>

#include "stack/base/time.h"
#include "stack/stack.h"

namespace shake {

class CongestionController {
 public:
  explicit CongestionController(CongestionControl algo = CongestionControl::kCubic)
      : algo_(algo) {}

  CongestionControl algorithm() const { return algo_; }

  // `acked` bytes were newly acknowledged by an ACK that arrived at `now` outside any recovery
  // episode. Grows *cwnd in slow start (below ssthresh) or in congestion avoidance.
  void OnAck(Instant now, uint32_t acked, uint32_t mss, uint32_t ssthresh, Duration srtt,
             uint32_t* cwnd);

  // A congestion event at window `cwnd` (bytes). Returns the new ssthresh, from cwnd in whole
  // segments as Linux computes it; the caller sets cwnd (PRR in fast recovery, one segment
  // after a timeout). `timeout` marks an RTO (RFC 9438 4.8).
  uint32_t OnCongestionEvent(uint32_t cwnd, uint32_t mss, bool timeout);

  // A retransmission timeout collapsed the window: byte counting starts over.
  void OnTimeout() { bytes_acked_ = 0; }
  // cwnd restarted after idle: congestion avoidance starts a new epoch from the new cwnd.
  void OnRestart() {
    bytes_acked_ = 0;
    epoch_valid_ = false;
  }

  // The state to put back if the episode that starts now proves spurious (RFC 9438 4.9).
  struct Saved {
    double w_max = 0;
    double cwnd_prior = 0;
    bool after_timeout = false;
  };
  Saved Save() const { return {w_max_, cwnd_prior_, after_timeout_}; }
  void Restore(const Saved& s);

  // For tests and TCP_INFO-like inspection.
  double w_max_segments() const { return w_max_; }

 private:
  void CubicAvoidance(Instant now, uint32_t acked, uint32_t mss, Duration srtt, uint32_t* cwnd);

  CongestionControl algo_;
  uint32_t bytes_acked_ = 0;  // Reno: RFC 5681 3.1 byte counting in congestion avoidance

  // CUBIC (RFC 9438 4.1.2's variables), in segments and seconds.
  double w_max_ = 0;          // window just before the last reduction (after fast convergence)
  double cwnd_prior_ = 0;     // window just before the last reduction
  double k_ = 0;              // seconds for W_cubic to climb back to W_max
  double cwnd_epoch_ = 0;     // cwnd when the current congestion avoidance stage began
  double w_est_ = 0;          // the Reno-friendly estimate (RFC 9438 4.3)
  double cwnd_frac_ = 0;      // sub-byte growth carried between ACKs
  bool epoch_valid_ = false;  // t_epoch is set: congestion avoidance has begun
  Instant t_epoch_;
  bool after_timeout_ = false;  // the next stage follows an RTO (RFC 9438 4.8)
};

}  // namespace shake
