// The RTO as Linux computes it (tcp_rtt_estimator, tcp_set_rto): SRTT plus the largest
// 4 * RTTVAR of the last round trip, never less than rto_min.
#include <gtest/gtest.h>

#include "stack/tcp/rtt.h"

namespace shake {
namespace {

Duration Ms(int64_t ms) { return Duration::Millis(ms); }

TEST(RttEstimatorTest, FirstSampleGivesSrttPlusTwiceItOrRtoMin) {
  RttEstimator a(Duration::Seconds(1), Ms(200), Duration::Seconds(120));
  EXPECT_EQ(a.rto(), Duration::Seconds(1));  // RFC 6298 (2.1) before any sample
  a.Sample(Ms(100), SeqNum(1), SeqNum(1));
  EXPECT_EQ(a.srtt(), Ms(100));
  EXPECT_EQ(a.rttvar(), Ms(50));  // RFC 6298 (2.2): R/2
  EXPECT_EQ(a.rto(), Ms(300));    // 100 + max(4 * 50, 200)
  RttEstimator b(Duration::Seconds(1), Ms(200), Duration::Seconds(120));
  b.Sample(Ms(400), SeqNum(1), SeqNum(1));
  EXPECT_EQ(b.rto(), Ms(1200));  // 400 + 4 * 200: RFC 6298's value when it exceeds rto_min
  RttEstimator c(Duration::Seconds(1), Ms(200), Duration::Seconds(120));
  c.Sample(Duration::Zero(), SeqNum(1), SeqNum(1));
  EXPECT_EQ(c.rto(), Ms(200));  // a zero RTT (virtual time): rto_min
}

TEST(RttEstimatorTest, SteadyPathKeepsSrttPlusRtoMin) {
  // RFC 6298 would let RTO fall to its floor, max(SRTT + 4 * RTTVAR, floor) = 200 ms here;
  // Linux floors the variance term instead: 300 ms on a steady 100 ms path.
  RttEstimator e(Duration::Seconds(1), Ms(200), Duration::Seconds(120));
  uint32_t una = 1;
  for (int i = 0; i < 50; ++i, una += 1000) e.Sample(Ms(100), SeqNum(una), SeqNum(una + 1000));
  EXPECT_EQ(e.srtt(), Ms(100));
  EXPECT_LT(e.rttvar(), Ms(1));
  EXPECT_EQ(e.rto(), Ms(300));
}

TEST(RttEstimatorTest, DeviationRaisesRtoAtOnceAndDecaysPerRoundTrip) {
  RttEstimator e(Duration::Seconds(1), Ms(10), Duration::Seconds(120));
  // Round trip 1 (SND.NXT 100 when it starts).
  e.Sample(Ms(100), SeqNum(1), SeqNum(100));
  EXPECT_EQ(e.rto(), Ms(300));  // 100 + 2 * 100
  // A jump to 200 ms within the same round trip: the deviation grows and RTO with it.
  e.Sample(Ms(200), SeqNum(50), SeqNum(100));
  // SRTT 112.5; 4 * RTTVAR = 200 + (100 - 50) = 250; RTO = 362.5 ms.
  EXPECT_EQ(e.srtt(), Duration::Micros(112500));
  EXPECT_EQ(e.rto(), Duration::Micros(362500));
  // Back to 100 ms, round trip over (SND.UNA 101 > 100): the variance term decays a quarter
  // of the way to the round trip's largest deviation, which was itself (250 ms): RTO is
  // 110.9375 + 250.
  e.Sample(Ms(100), SeqNum(101), SeqNum(200));
  EXPECT_EQ(e.srtt(), Duration::Micros(110937) + Duration::Nanos(500));
  EXPECT_EQ(e.rto(), e.srtt() + Ms(250));
  // The next round trips see only small deviations: the term decays towards them.
  const Duration before = e.rto();
  e.Sample(Ms(100), SeqNum(201), SeqNum(300));
  EXPECT_LT(e.rto(), before);
}

TEST(RttEstimatorTest, BackoffDoublesUpToTheMaximum) {
  RttEstimator e(Duration::Seconds(1), Ms(200), Duration::Seconds(120));
  e.Sample(Ms(100), SeqNum(1), SeqNum(1));
  e.Backoff();
  EXPECT_EQ(e.rto(), Ms(600));
  for (int i = 0; i < 20; ++i) e.Backoff();
  EXPECT_EQ(e.rto(), Duration::Seconds(120));
  e.Sample(Ms(100), SeqNum(2), SeqNum(2));  // a valid measurement resets the backoff
  EXPECT_EQ(e.backoff(), 0);
}

}  // namespace
}  // namespace shake
