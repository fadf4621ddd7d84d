#include "stack/tcp/congestion.h"

#include <algorithm>
#include <cmath>

namespace shake {

namespace {

// RFC 9438 4.1.1 and 5: the constants of the window function.
constexpr double kCubicC = 0.4;
constexpr double kCubicBeta = 0.7;
constexpr uint32_t kCubicBetaScaled = 717;  // Linux's beta, out of 1024
// RFC 9438 4.3: the additive increase that makes CUBIC's average window match Reno's.
constexpr double kRenoFriendlyAlpha = 3.0 * (1.0 - kCubicBeta) / (1.0 + kCubicBeta);
// Far beyond any window a 32-bit sequence space can use; keeps the arithmetic finite.
constexpr uint32_t kMaxCwnd = 1u << 30;

double Seconds(Duration d) { return static_cast<double>(d.nanos()) / 1e9; }

}  // namespace

void CongestionController::OnAck(Instant now, uint32_t acked, uint32_t mss, uint32_t ssthresh,
                                 Duration srtt, uint32_t* cwnd) {
  if (acked == 0 || mss == 0) return;
  if (*cwnd < ssthresh) {
    // RFC 5681 3.1 slow start with RFC 3465's byte counting. RFC 3465 suggests L = 2 (at
    // most two segments per ACK); Linux (tcp_slow_start) has no such limit: a stretch ACK
    // grows cwnd by all it acknowledges, up to ssthresh, and what is left over counts in
    // congestion avoidance. We do as Linux. RFC 9438 4.10 keeps this slow start for CUBIC.
    const uint32_t grow = std::min(acked, ssthresh - *cwnd);
    *cwnd = std::min(kMaxCwnd, *cwnd + grow);
    acked -= grow;
    if (acked == 0 || *cwnd < ssthresh) return;
  }
  if (algo_ == CongestionControl::kCubic) {
    CubicAvoidance(now, acked, mss, srtt, cwnd);
    return;
  }
  // RFC 5681 3.1 congestion avoidance: one segment per window's worth of acknowledged bytes.
  bytes_acked_ += acked;
  if (bytes_acked_ >= *cwnd) {
    bytes_acked_ -= *cwnd;
    *cwnd = std::min(kMaxCwnd, *cwnd + mss);
  }
}

void CongestionController::CubicAvoidance(Instant now, uint32_t acked, uint32_t mss,
                                          Duration srtt, uint32_t* cwnd) {
  const double seg = static_cast<double>(mss);
  const double cwnd_seg = static_cast<double>(*cwnd) / seg;
  if (!epoch_valid_) {
    // RFC 9438 4.2: a congestion avoidance stage begins; t counts from here and K is the time
    // the cubic needs to climb from cwnd_epoch back to W_max.
    epoch_valid_ = true;
    t_epoch_ = now;
    cwnd_epoch_ = cwnd_seg;
    w_est_ = cwnd_seg;  // RFC 9438 4.3: W_est starts at cwnd_epoch
    cwnd_frac_ = 0;
    if (after_timeout_ || w_max_ <= cwnd_seg) {
      // RFC 9438 4.8: the first stage after a timeout uses K = 0 and W_max = the window at its
      // start; the same when no reduction has happened yet (slow start simply reached
      // ssthresh, as RFC 9438 4.10 describes for an exit without congestion).
      after_timeout_ = false;
      w_max_ = cwnd_seg;
      k_ = 0;
    } else {
      k_ = std::cbrt((w_max_ - cwnd_seg) / kCubicC);  // RFC 9438 4.2, Figure 2
    }
  }
  const double t = Seconds(now - t_epoch_);
  const double segs_acked = static_cast<double>(acked) / seg;
  auto w_cubic = [&](double at) {  // RFC 9438 4.2, Figure 1
    const double d = at - k_;
    return kCubicC * d * d * d + w_max_;
  };

  // RFC 9438 4.3: the Reno-friendly estimate grows by alpha per window of ACKs; alpha becomes 1
  // once W_est has regained the window before the last reduction.
  const double alpha = w_est_ >= cwnd_prior_ ? 1.0 : kRenoFriendlyAlpha;
  w_est_ += alpha * segs_acked / cwnd_seg;

  double next = cwnd_seg;
  if (w_cubic(t) < w_est_) {
    // RFC 9438 4.3: in the Reno-friendly region cwnd follows W_est.
    next = std::max(cwnd_seg, w_est_);
  } else {
    // RFC 9438 4.4 (concave) and 4.5 (convex): aim at W_cubic one RTT ahead, bounded to
    // [cwnd, 1.5 cwnd], and close the gap by (target - cwnd) / cwnd per segment acknowledged.
    const double target = std::clamp(w_cubic(t + Seconds(srtt)), cwnd_seg, 1.5 * cwnd_seg);
    next = cwnd_seg + (target - cwnd_seg) / cwnd_seg * segs_acked;
  }
  const double grow = (next - cwnd_seg) * seg + cwnd_frac_;
  if (grow <= 0) return;
  const double whole = std::floor(grow);
  cwnd_frac_ = grow - whole;
  const double limit = static_cast<double>(kMaxCwnd - *cwnd);
  *cwnd += static_cast<uint32_t>(std::min(whole, limit));
}

uint32_t CongestionController::OnCongestionEvent(uint32_t cwnd, uint32_t mss, bool timeout) {
  // As Linux (tcp_reno_ssthresh, bictcp_recalc_ssthresh), ssthresh comes from cwnd in whole
  // segments, never under two: RFC 5681 3.1's FlightSize / 2 and RFC 9438 4.6's
  // flight_size * beta_cubic, with cwnd standing for the flight, which RFC 9438 allows since
  // cwnd does not grow while the sender is application-limited (RFC 7661 validation, GrowWindow).
  const uint32_t segs = cwnd / (mss == 0 ? 1 : mss);
  if (algo_ == CongestionControl::kReno) return std::max(segs / 2, 2u) * mss;
  const double cwnd_seg = static_cast<double>(segs);
  // RFC 9438 4.7 fast convergence: a flow whose window peaked below the previous W_max is
  // losing share; it lowers its plateau further to let newer flows grow.
  w_max_ = cwnd_seg < w_max_ ? cwnd_seg * (1.0 + kCubicBeta) / 2.0 : cwnd_seg;
  cwnd_prior_ = cwnd_seg;
  epoch_valid_ = false;
  cwnd_frac_ = 0;
  // RFC 9438 4.8: a timeout also takes ssthresh from beta_cubic; the next stage starts with
  // K = 0.
  after_timeout_ = timeout;
  // beta_cubic as Linux scales it: 717 / 1024.
  return std::max(segs * kCubicBetaScaled / 1024u, 2u) * mss;
}

void CongestionController::Restore(const Saved& s) {
  // RFC 9438 4.9: after a spurious congestion event, W_max and cwnd_prior return to their
  // values before it; the stage restarts from the restored window.
  w_max_ = s.w_max;
  cwnd_prior_ = s.cwnd_prior;
  after_timeout_ = s.after_timeout;
  epoch_valid_ = false;
  cwnd_frac_ = 0;
}

}  // namespace shake
