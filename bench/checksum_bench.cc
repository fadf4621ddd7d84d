// Internet checksum throughput (RFC 1071) on a minimum-size packet, an Ethernet MTU and the
// largest IPv4 datagram.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <vector>

#include "stack/wire/checksum.h"

namespace {

void BM_InternetChecksum(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  std::vector<std::byte> buf(n);
  for (size_t i = 0; i < n; ++i) buf[i] = static_cast<std::byte>(i * 131 + 7);
  for (auto _ : state) {
    benchmark::DoNotOptimize(buf.data());
    uint16_t c = shake::wire::InternetChecksum(buf);
    benchmark::DoNotOptimize(c);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n));
}
BENCHMARK(BM_InternetChecksum)->Arg(64)->Arg(1500)->Arg(65535);

}  // namespace
