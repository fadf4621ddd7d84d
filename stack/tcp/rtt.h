// RTT estimation and the retransmission timeout: RFC 6298's estimator in the form Linux uses
// (tcp_rtt_estimator and tcp_set_rto in net/ipv4/tcp_input.c), so that timers match the
// kernel's to the microsecond.
//
// SRTT and the mean deviation follow RFC 6298 (2.2)-(2.3) with alpha = 1/8 and beta = 1/4,
// except that a sample below SRTT moves the deviation with a gain of 1/32 (Linux: it must not
// grow the RTO, nor shrink it too fast). The timeout is RTO = SRTT + RTTVAR', where RTTVAR' is
// the largest 4 * deviation seen over the last round trip, never below rto_min, and decays
// towards newer values once per round trip. On a steady path RTO is therefore SRTT + rto_min,
// where RFC 6298 (2.4) would give max(SRTT + 4 * RTTVAR, 1 s).
//
//   RttEstimator rtt(rto_initial, rto_min, rto_max);
//   rtt.Sample(measured, snd_una, snd_nxt);  // after each ACK that yields a measurement
//   rtt.rto();                               // with exponential backoff (RFC 6298 5.5)
#pragma once

#include "stack/base/seqnum.h"
#include "stack/base/time.h"

namespace shake {

class RttEstimator {
 public:
  RttEstimator(Duration initial_rto, Duration min_rto, Duration max_rto)
      : rto_(initial_rto), min_rto_(min_rto), max_rto_(max_rto) {}

  // Folds one measurement into the estimate and recomputes RTO. `snd_una` and `snd_nxt` are the
  // connection's after the ACK: the deviation's maximum is kept per round trip, which ends when
  // SND.UNA passes the SND.NXT recorded at its start.
  void Sample(Duration rtt, SeqNum snd_una, SeqNum snd_nxt);
  // RFC 6298 (5.5): the timer backs off by doubling, up to the maximum.
  void Backoff() { backoff_ = backoff_ < 30 ? backoff_ + 1 : backoff_; }
  void ResetBackoff() { backoff_ = 0; }
  int backoff() const { return backoff_; }

  bool has_sample() const { return has_sample_; }
  Duration srtt() const { return srtt_; }
  // RFC 6298's RTTVAR (the smoothed mean deviation; Linux's tcpi_rttvar).
  Duration rttvar() const { return mdev_ / 4; }
  // The current timeout including backoff.
  Duration rto() const;
  // The timeout without backoff.
  Duration base_rto() const { return rto_; }

 private:
  Duration srtt_;
  Duration mdev_;       // 4 * the mean deviation (Linux mdev_us)
  Duration mdev_max_;   // its largest value in the current round trip, at least rto_min
  Duration rttvar_;     // the variance term of RTO (Linux rttvar_us)
  SeqNum rtt_seq_;      // the round trip ends when SND.UNA passes this
  Duration rto_;
  Duration min_rto_;
  Duration max_rto_;
  int backoff_ = 0;
  bool has_sample_ = false;
};

}  // namespace shake
