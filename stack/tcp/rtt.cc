#include "stack/tcp/rtt.h"

namespace shake {

namespace {
// RFC 6298 (2.4) lets G, the clock granularity, be the host's; ours is a nanosecond.
constexpr Duration kGranularity = Duration::Micros(1);
Duration Abs(Duration d) { return d < Duration::Zero() ? Duration::Zero() - d : d; }
}  // namespace

void RttEstimator::Sample(Duration rtt) {
  if (rtt < Duration::Zero()) return;
  if (!has_sample_) {
    // RFC 6298 (2.2)
    srtt_ = rtt;
    rttvar_ = rtt / 2;
    has_sample_ = true;
  } else {
    // RFC 6298 (2.3), with alpha = 1/8 and beta = 1/4.
    rttvar_ = (rttvar_ * 3 + Abs(srtt_ - rtt)) / 4;
    srtt_ = (srtt_ * 7 + rtt) / 8;
  }
  Duration rto = srtt_ + Max(kGranularity, rttvar_ * 4);
  // RFC 6298 (2.4) asks for a 1 s floor; like Linux we use a 200 ms floor (configurable).
  rto_ = Min(Max(rto, min_rto_), max_rto_);
  backoff_ = 0;
}

Duration RttEstimator::rto() const {
  Duration r = rto_;
  for (int i = 0; i < backoff_ && r < max_rto_; ++i) r = r * 2;
  return Min(r, max_rto_);
}

}  // namespace shake
