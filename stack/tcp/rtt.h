// RTT estimation and the retransmission timeout, as RFC 6298 specifies.
#pragma once

#include "stack/base/time.h"

namespace shake {

class RttEstimator {
 public:
  RttEstimator(Duration initial_rto, Duration min_rto, Duration max_rto)
      : rto_(initial_rto), min_rto_(min_rto), max_rto_(max_rto) {}

  // RFC 6298 (2.2) and (2.3): folds one measurement into SRTT and RTTVAR and recomputes RTO.
  void Sample(Duration rtt);
  // RFC 6298 (5.5): the timer backs off by doubling, up to the maximum.
  void Backoff() { backoff_ = backoff_ < 30 ? backoff_ + 1 : backoff_; }
  void ResetBackoff() { backoff_ = 0; }
  int backoff() const { return backoff_; }

  bool has_sample() const { return has_sample_; }
  Duration srtt() const { return srtt_; }
  Duration rttvar() const { return rttvar_; }
  // The current timeout including backoff.
  Duration rto() const;
  // The timeout without backoff.
  Duration base_rto() const { return rto_; }

 private:
  Duration srtt_;
  Duration rttvar_;
  Duration rto_;
  Duration min_rto_;
  Duration max_rto_;
  int backoff_ = 0;
  bool has_sample_ = false;
};

}  // namespace shake
