#include "io/fault.h"

#include <algorithm>

namespace shake::io {

FaultInjector::FaultInjector(const FaultConfig& config)
    : config_(config), state_(config.seed ^ 0x9e3779b97f4a7c15ull) {}

// splitmix64: small, fast, and the same sequence on every platform.
uint64_t FaultInjector::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void FaultInjector::Process(Instant now, Direction dir, std::span<const std::byte> frame,
                            FrameMeta meta, FrameEmitter& next) {
  const bool active = dir == Direction::kIn ? config_.inbound : config_.outbound;
  if (!active) {
    next.Emit(frame, meta);
    return;
  }
  ++stats_.frames;
  if (Chance(config_.loss)) {
    ++stats_.lost;
    return;
  }
  const bool dup = Chance(config_.duplicate);
  if (dup) ++stats_.duplicated;
  for (int copy = 0; copy < (dup ? 2 : 1); ++copy) {
    Schedule(now, dir, frame, meta, Chance(config_.corrupt), next);
  }
}

void FaultInjector::Schedule(Instant now, Direction dir, std::span<const std::byte> frame,
                             FrameMeta meta, bool corrupt, FrameEmitter& next) {
  const size_t d = static_cast<size_t>(dir);
  Instant release = now + config_.delay;
  if (config_.jitter > Duration::Zero()) {
    release = release + Duration::Nanos(static_cast<int64_t>(
                            Uniform() * static_cast<double>(config_.jitter.nanos())));
    // Jitter alone does not reorder: a frame never leaves before the one before it.
    release = std::max(release, last_release_[d]);
  }
  if (config_.rate_bps > 0) {
    const Instant start = std::max(release, link_free_[d]);
    const int64_t tx_ns = static_cast<int64_t>(frame.size() * 8 * 1000000000ull / config_.rate_bps);
    release = start + Duration::Nanos(tx_ns);
    link_free_[d] = release;
  }
  last_release_[d] = std::max(last_release_[d], release);
  if (Chance(config_.reorder)) {
    ++stats_.reordered;
    release = release + config_.reorder_delay;
  }
  std::vector<std::byte> copy;
  if (corrupt && !frame.empty()) {
    ++stats_.corrupted;
    copy.assign(frame.begin(), frame.end());
    const uint64_t r = Next();
    const size_t byte = static_cast<size_t>(r % copy.size());
    copy[byte] ^= std::byte{static_cast<unsigned char>(1u << ((r >> 32) % 8))};
    meta.checksum_trusted = false;  // the receiver must check, and will drop it
    frame = copy;
  }
  if (release <= now) {
    ++stats_.delivered;
    next.Emit(frame, meta);
    return;
  }
  if (queued_bytes_[d] + frame.size() > config_.queue_limit) {
    ++stats_.queue_drops;
    return;
  }
  if (copy.empty()) copy.assign(frame.begin(), frame.end());
  queued_bytes_[d] += copy.size();
  held_.push(Held{release, order_++, dir, meta, std::move(copy)});
}

Instant FaultInjector::Poll(Instant now, FrameEmitter& in_next, FrameEmitter& out_next) {
  // Bounded by the queue: each iteration removes one frame.
  while (!held_.empty() && held_.top().release <= now) {
    Held h = std::move(const_cast<Held&>(held_.top()));
    held_.pop();
    queued_bytes_[static_cast<size_t>(h.dir)] -= h.data.size();
    ++stats_.delivered;
    (h.dir == Direction::kIn ? in_next : out_next).Emit(h.data, h.meta);
  }
  return held_.empty() ? Instant::Never() : held_.top().release;
}

}  // namespace shake::io
