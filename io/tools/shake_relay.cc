// shake-relay: an impairment relay. Bridges two interfaces with AF_PACKET sockets and applies
// seeded loss, duplication, reordering, delay, corruption and a rate limit in each direction —
// the project's netem, since the test kernel has none. Run it in a middle namespace:
//
//   shake-relay --a r0 --b r1 --seed 7 --loss 0.02 --dup 0.01 --reorder 0.01 --corrupt 0.001
//
// Frames are forwarded as received (ARP included), after GSO super-frames are split and partial
// checksums completed, so a corrupted frame is always caught by the receiver's checksum. The
// relay stops on SIGINT/SIGTERM or after --duration seconds and prints its counters.
#include <poll.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/clock.h"
#include "io/fault.h"
#include "io/packet_device.h"

namespace {

using namespace shake;
using namespace shake::io;

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

void Usage() {
  std::fprintf(stderr,
               "usage: shake-relay --a IF --b IF [--seed N] [--loss P] [--dup P] [--reorder P]\n"
               "       [--corrupt P] [--delay-ms MS] [--jitter-ms MS] [--reorder-us US]\n"
               "       [--rate-mbit R] [--queue-kb KB] [--duration S]\n"
               "Probabilities P are per frame in [0,1]; impairments apply in both directions.\n");
}

// Queues frames into a port, flushing when its batch is full.
class PortEmitter final : public FrameEmitter {
 public:
  explicit PortEmitter(SyncPort& port) : port_(port) {}
  void Emit(std::span<const std::byte> frame, FrameMeta) override {
    if (!port_.Queue(frame)) {
      dropped += port_.Flush();
      if (!port_.Queue(frame)) ++dropped;  // larger than the MTU: cannot be sent
    }
    ++sent;
  }
  uint64_t sent = 0;
  uint64_t dropped = 0;

 private:
  SyncPort& port_;
};

// Hands every received frame to the injector in one direction.
class Intake final : public FrameReceiver {
 public:
  Intake(FaultInjector& f, Direction d, FrameEmitter& next) : f_(f), d_(d), next_(next) {}
  void OnFrame(std::span<const std::byte> frame, FrameMeta meta) override {
    f_.Process(now, d_, frame, meta, next_);
  }
  Instant now;

 private:
  FaultInjector& f_;
  Direction d_;
  FrameEmitter& next_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string if_a, if_b;
  FaultConfig fc;
  double duration_s = 3600;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--a") if_a = next();
    else if (arg == "--b") if_b = next();
    else if (arg == "--seed") fc.seed = std::strtoull(next(), nullptr, 10);
    else if (arg == "--loss") fc.loss = std::atof(next());
    else if (arg == "--dup") fc.duplicate = std::atof(next());
    else if (arg == "--reorder") fc.reorder = std::atof(next());
    else if (arg == "--corrupt") fc.corrupt = std::atof(next());
    else if (arg == "--delay-ms") fc.delay = Duration::Micros(static_cast<int64_t>(std::atof(next()) * 1000));
    else if (arg == "--jitter-ms") fc.jitter = Duration::Micros(static_cast<int64_t>(std::atof(next()) * 1000));
    else if (arg == "--reorder-us") fc.reorder_delay = Duration::Micros(std::atoll(next()));
    else if (arg == "--rate-mbit") fc.rate_bps = static_cast<uint64_t>(std::atof(next()) * 1e6);
    else if (arg == "--queue-kb") fc.queue_limit = static_cast<size_t>(std::atoll(next())) * 1024;
    else if (arg == "--duration") duration_s = std::atof(next());
    else {
      Usage();
      return 2;
    }
  }
  if (if_a.empty() || if_b.empty()) {
    Usage();
    return 2;
  }
  std::string error;
  auto a = PacketDevice::Open(PacketOptions{.name = if_a, .complete_checksums = true}, &error);
  if (!a) {
    std::fprintf(stderr, "shake-relay: %s\n", error.c_str());
    return 1;
  }
  auto b = PacketDevice::Open(PacketOptions{.name = if_b, .complete_checksums = true}, &error);
  if (!b) {
    std::fprintf(stderr, "shake-relay: %s\n", error.c_str());
    return 1;
  }
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);

  FaultInjector faults(fc);
  SyncPort port_a(*a, 64), port_b(*b, 64);
  PortEmitter to_a(port_a), to_b(port_b);
  // A -> B travels as kOut, B -> A as kIn.
  Intake from_a(faults, Direction::kOut, to_b), from_b(faults, Direction::kIn, to_a);
  std::printf("shake-relay: %s <-> %s seed=%llu loss=%g dup=%g reorder=%g corrupt=%g\n",
              if_a.c_str(), if_b.c_str(), static_cast<unsigned long long>(fc.seed), fc.loss,
              fc.duplicate, fc.reorder, fc.corrupt);
  std::fflush(stdout);

  const Instant end = MonotonicNow() + Duration::Micros(static_cast<int64_t>(duration_s * 1e6));
  Instant due = Instant::Never();
  // Bounded by --duration and by signals.
  while (!g_stop) {
    Instant now = MonotonicNow();
    if (now >= end) break;
    const Duration wait = Min(Min(due, end) - now, Duration::Millis(100));
    pollfd fds[2] = {{a->fd(), POLLIN, 0}, {b->fd(), POLLIN, 0}};
    const Duration w = Max(wait, Duration::Zero());  // frames due now: look without sleeping
    const timespec ts{w.nanos() / 1000000000, w.nanos() % 1000000000};
    if (ppoll(fds, 2, &ts, nullptr) < 0 && errno != EINTR) {
      std::perror("shake-relay: ppoll");
      return 1;
    }
    now = MonotonicNow();
    from_a.now = from_b.now = now;
    // A few batches per wake-up from each side, so neither can starve the other.
    for (int round = 0; round < 4; ++round) {
      const int na = port_a.Receive(from_a);
      const int nb = port_b.Receive(from_b);
      if (na <= 0 && nb <= 0) break;
    }
    due = faults.Poll(now, to_a, to_b);
    to_a.dropped += port_a.Flush();
    to_b.dropped += port_b.Flush();
  }
  const FaultStats& s = faults.stats();
  std::printf(
      "shake-relay: frames=%llu lost=%llu duplicated=%llu reordered=%llu corrupted=%llu "
      "queue_drops=%llu forwarded_a=%llu forwarded_b=%llu send_drops=%llu gso_split=%llu\n",
      (unsigned long long)s.frames, (unsigned long long)s.lost,
      (unsigned long long)s.duplicated, (unsigned long long)s.reordered,
      (unsigned long long)s.corrupted, (unsigned long long)s.queue_drops,
      (unsigned long long)to_a.sent, (unsigned long long)to_b.sent,
      (unsigned long long)(to_a.dropped + to_b.dropped),
      (unsigned long long)(a->stats().gso_superframes + b->stats().gso_superframes));
  return 0;
}
