// A whole connection in the simulator: SYN, SYN-ACK, ACK, FIN/ACK both ways, and TIME-WAIT
// expiry, between two stacks in virtual time over a clean 1 Gbit/s, 1 ms wire. ns per
// connection; the two stacks are built once and reused.
#include <benchmark/benchmark.h>

#include "tests/stack/sim/sim.h"

namespace shake::sim {
namespace {

void BM_HandshakeAndClose(benchmark::State& state) {
  NetworkParams p;
  p.seed = 7;
  p.a_to_b.delay = Duration::Millis(1);
  p.b_to_a.delay = Duration::Millis(1);
  p.pool_allocator = true;
  Network net(p);
  uint64_t seed = 1;
  for (auto _ : state) {
    BulkTransfer xfer(seed++, 0, 0);
    const RunResult r = net.Run(xfer, RunLimits{});
    if (!r.ok) {
      state.SkipWithError(r.failure.c_str());
      break;
    }
  }
  state.counters["segments_per_conn"] =
      static_cast<double>(net.wire_stats(0).frames + net.wire_stats(1).frames) /
      static_cast<double>(state.iterations());
}
BENCHMARK(BM_HandshakeAndClose);

}  // namespace
}  // namespace shake::sim
