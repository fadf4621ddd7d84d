// FaultInjector: seeded, so decisions replay exactly; each impairment does what it says.
#include "io/fault.h"

#include <gtest/gtest.h>

#include <vector>

namespace shake::io {
namespace {

struct Collect final : FrameEmitter {
  std::vector<std::vector<std::byte>> frames;
  std::vector<FrameMeta> metas;
  void Emit(std::span<const std::byte> f, FrameMeta m) override {
    frames.emplace_back(f.begin(), f.end());
    metas.push_back(m);
  }
};

std::vector<std::byte> Numbered(uint32_t n, size_t size = 100) {
  std::vector<std::byte> f(size, std::byte{0x5a});
  for (int i = 0; i < 4; ++i) f[static_cast<size_t>(i)] = std::byte(n >> (8 * i));
  return f;
}
uint32_t NumberOf(const std::vector<std::byte>& f) {
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= uint32_t(f[static_cast<size_t>(i)]) << (8 * i);
  return n;
}

// Pushes `count` frames 10 us apart and then drains; returns what came out.
Collect Drive(FaultInjector& fi, int count) {
  Collect out;
  Instant t = Instant::FromNanos(1'000'000);
  for (int i = 0; i < count; ++i) {
    fi.Process(t, Direction::kOut, Numbered(static_cast<uint32_t>(i)), {}, out);
    fi.Poll(t, out, out);
    t = t + Duration::Micros(10);
  }
  fi.Poll(t + Duration::Seconds(10), out, out);
  return out;
}

TEST(FaultInjector, SameSeedSameDecisions) {
  FaultConfig c{.seed = 42, .loss = 0.1, .duplicate = 0.05, .reorder = 0.05, .corrupt = 0.02};
  FaultInjector a(c), b(c);
  const auto ra = Drive(a, 2000), rb = Drive(b, 2000);
  EXPECT_EQ(ra.frames, rb.frames);
  c.seed = 43;
  FaultInjector d(c);
  EXPECT_NE(Drive(d, 2000).frames, ra.frames);
}

TEST(FaultInjector, LossRateIsRoughlyAsConfigured) {
  FaultInjector fi(FaultConfig{.seed = 1, .loss = 0.02});
  const auto out = Drive(fi, 20000);
  EXPECT_EQ(fi.stats().lost + out.frames.size(), 20000u);
  EXPECT_GT(fi.stats().lost, 300u);
  EXPECT_LT(fi.stats().lost, 500u);
}

TEST(FaultInjector, DuplicatesFollowTheOriginal) {
  FaultInjector fi(FaultConfig{.seed = 2, .duplicate = 0.1});
  const auto out = Drive(fi, 5000);
  EXPECT_EQ(out.frames.size(), 5000 + fi.stats().duplicated);
  EXPECT_GT(fi.stats().duplicated, 350u);
  size_t adjacent = 0;
  for (size_t i = 1; i < out.frames.size(); ++i) adjacent += out.frames[i] == out.frames[i - 1];
  EXPECT_EQ(adjacent, fi.stats().duplicated);
}

TEST(FaultInjector, ReorderedFramesArriveLaterButAllArrive) {
  FaultInjector fi(FaultConfig{.seed = 3, .reorder = 0.05});
  const auto out = Drive(fi, 5000);
  ASSERT_EQ(out.frames.size(), 5000u);
  size_t inversions = 0;
  std::vector<bool> seen(5000);
  for (size_t i = 0; i < out.frames.size(); ++i) {
    seen[NumberOf(out.frames[i])] = true;
    if (i && NumberOf(out.frames[i]) < NumberOf(out.frames[i - 1])) ++inversions;
  }
  EXPECT_GT(fi.stats().reordered, 150u);
  EXPECT_GE(inversions, fi.stats().reordered / 2);
  for (bool s : seen) EXPECT_TRUE(s);
}

TEST(FaultInjector, CorruptionFlipsOneBitAndRevokesChecksumTrust) {
  FaultInjector fi(FaultConfig{.seed = 4, .corrupt = 1.0});
  Collect out;
  const auto f = Numbered(7);
  fi.Process(Instant::FromNanos(1), Direction::kIn, f, FrameMeta{.checksum_trusted = true}, out);
  ASSERT_EQ(out.frames.size(), 1u);
  EXPECT_FALSE(out.metas[0].checksum_trusted);
  int bits = 0;
  for (size_t i = 0; i < f.size(); ++i) bits += __builtin_popcount(unsigned(f[i] ^ out.frames[0][i]));
  EXPECT_EQ(bits, 1);
}

TEST(FaultInjector, DelayHoldsFramesUntilDue) {
  FaultInjector fi(FaultConfig{.delay = Duration::Millis(5)});
  Collect out;
  const Instant t0 = Instant::FromNanos(1'000'000'000);
  fi.Process(t0, Direction::kOut, Numbered(1), {}, out);
  EXPECT_TRUE(out.frames.empty());
  EXPECT_EQ(fi.Poll(t0 + Duration::Millis(4), out, out), t0 + Duration::Millis(5));
  EXPECT_TRUE(out.frames.empty());
  EXPECT_EQ(fi.Poll(t0 + Duration::Millis(5), out, out), Instant::Never());
  EXPECT_EQ(out.frames.size(), 1u);
}

TEST(FaultInjector, RateLimitSpacesFramesAndDropsBeyondTheQueue) {
  // 1000-byte frames at 8 Mbit/s: one per millisecond; the queue holds 10 of them.
  FaultInjector fi(FaultConfig{.rate_bps = 8'000'000, .queue_limit = 10'000});
  Collect out;
  const Instant t0 = Instant::FromNanos(1'000'000'000);
  for (uint32_t i = 0; i < 20; ++i) fi.Process(t0, Direction::kOut, Numbered(i, 1000), {}, out);
  EXPECT_EQ(fi.stats().queue_drops, 10u);
  fi.Poll(t0 + Duration::Micros(4500), out, out);
  EXPECT_EQ(out.frames.size(), 4u);
  fi.Poll(t0 + Duration::Seconds(1), out, out);
  EXPECT_EQ(out.frames.size(), 10u);
}

TEST(FaultInjector, DirectionsCanBeExempted) {
  FaultInjector fi(FaultConfig{.loss = 1.0, .inbound = false});
  Collect out;
  fi.Process(Instant(), Direction::kIn, Numbered(1), {}, out);
  fi.Process(Instant(), Direction::kOut, Numbered(2), {}, out);
  ASSERT_EQ(out.frames.size(), 1u);
  EXPECT_EQ(NumberOf(out.frames[0]), 1u);
}

}  // namespace
}  // namespace shake::io
