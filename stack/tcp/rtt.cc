#include "stack/tcp/rtt.h"

namespace shake {

void RttEstimator::Sample(Duration rtt, SeqNum snd_una, SeqNum snd_nxt) {
  if (rtt < Duration::Zero()) return;
  if (!has_sample_) {
    // RFC 6298 (2.2): SRTT = R, RTTVAR = R/2 (so 4 * RTTVAR = 2R).
    srtt_ = rtt;
    mdev_ = rtt * 2;
    rttvar_ = Max(mdev_, min_rto_);
    mdev_max_ = rttvar_;
    rtt_seq_ = snd_nxt;
    has_sample_ = true;
  } else {
    // RFC 6298 (2.3): SRTT += (R - SRTT) / 8; RTTVAR += (|SRTT - R| - RTTVAR) / 4, kept as
    // 4 * RTTVAR. A sample below SRTT changes the deviation by a further eighth of that
    // (Linux: like Eifel, a falling RTT must not raise the timeout).
    const Duration err = rtt - srtt_;
    srtt_ = srtt_ + err / 8;
    Duration m = err < Duration::Zero() ? Duration::Zero() - err : err;
    m = m - mdev_ / 4;
    if (err < Duration::Zero() && m > Duration::Zero()) m = m / 8;
    mdev_ = mdev_ + m;
    if (mdev_ > mdev_max_) {
      mdev_max_ = mdev_;
      if (mdev_max_ > rttvar_) rttvar_ = mdev_max_;
    }
    if (snd_una > rtt_seq_) {
      // A round trip is over: the variance term decays a quarter of the way towards the
      // largest deviation it saw, and the next round trip starts from rto_min.
      if (mdev_max_ < rttvar_) rttvar_ = rttvar_ - (rttvar_ - mdev_max_) / 4;
      rtt_seq_ = snd_nxt;
      mdev_max_ = min_rto_;
    }
    if (srtt_ < Duration::Zero()) srtt_ = Duration::Zero();
  }
  // Linux __tcp_set_rto and tcp_bound_rto: RTO = SRTT + RTTVAR', at most rto_max. RTTVAR' is
  // never below rto_min, which takes the place of RFC 6298 (2.4)'s 1 s floor.
  rto_ = Min(srtt_ + rttvar_, max_rto_);
  backoff_ = 0;
}

Duration RttEstimator::rto() const {
  Duration r = rto_;
  for (int i = 0; i < backoff_ && r < max_rto_; ++i) r = r * 2;
  return Min(r, max_rto_);
}

}  // namespace shake
