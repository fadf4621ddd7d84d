// FaultInjector: a seeded filter that impairs frames the way a bad network would — loss,
// duplication, reordering, delay with jitter, single-bit corruption and a rate limit with a
// bounded queue. The same seed and the same input give the same decisions, so a failing run can
// be replayed.
//
//   FaultConfig c{.seed = 7, .loss = 0.02, .duplicate = 0.01, .reorder = 0.01, .corrupt = 0.001};
//   FaultInjector faults(c);  engine.AddFilter(&faults);
//
// Reordering holds a frame back by `reorder_delay` while later frames pass it. A corrupted frame
// loses checksum_trusted, so the receiver verifies (and drops) it. Delay and rate limiting keep
// frames in a queue of at most `queue_limit` bytes per direction; beyond it frames are dropped
// at the tail, as a router does.
#pragma once

#include <cstdint>
#include <queue>
#include <span>
#include <vector>

#include "io/frame.h"

namespace shake::io {

struct FaultConfig {
  uint64_t seed = 1;
  double loss = 0;       // probability per frame
  double duplicate = 0;  // probability that a second copy follows
  double reorder = 0;    // probability that a frame is held back
  double corrupt = 0;    // probability that one bit of a copy is flipped
  Duration delay{};      // added to every frame
  Duration jitter{};      // uniform extra delay in [0, jitter) (frames stay in order)
  Duration reorder_delay = Duration::Micros(500);
  uint64_t rate_bps = 0;            // bits per second per direction; 0 = unlimited
  size_t queue_limit = 4u << 20;    // bytes held per direction
  bool inbound = true;              // impair frames towards the stack
  bool outbound = true;             // impair frames from the stack
};

struct FaultStats {
  uint64_t frames = 0;
  uint64_t lost = 0;
  uint64_t duplicated = 0;
  uint64_t reordered = 0;
  uint64_t corrupted = 0;
  uint64_t queue_drops = 0;
  uint64_t delivered = 0;
};

class FaultInjector final : public FrameFilter {
 public:
  explicit FaultInjector(const FaultConfig& config);

  void Process(Instant now, Direction dir, std::span<const std::byte> frame, FrameMeta meta,
               FrameEmitter& next) override;
  Instant Poll(Instant now, FrameEmitter& in_next, FrameEmitter& out_next) override;

  const FaultStats& stats() const { return stats_; }
  const FaultConfig& config() const { return config_; }
  size_t held() const { return held_.size(); }

 private:
  struct Held {
    Instant release;
    uint64_t order;
    Direction dir;
    FrameMeta meta;
    std::vector<std::byte> data;
    bool operator>(const Held& o) const {
      return release != o.release ? release > o.release : order > o.order;
    }
  };
  uint64_t Next();
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  bool Chance(double p) { return p > 0 && Uniform() < p; }
  void Schedule(Instant now, Direction dir, std::span<const std::byte> frame, FrameMeta meta,
                bool corrupt, FrameEmitter& next);

  FaultConfig config_;
  FaultStats stats_;
  uint64_t state_;
  uint64_t order_ = 0;
  Instant link_free_[2];     // when each direction's rate-limited link is idle again
  Instant last_release_[2];  // delay with jitter keeps order
  size_t queued_bytes_[2] = {0, 0};
  std::priority_queue<Held, std::vector<Held>, std::greater<Held>> held_;
};

}  // namespace shake::io
