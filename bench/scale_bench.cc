// Scale benchmarks: what connections cost when there are many of them.
//
//   BM_ConnectionRate/B      B connections opened concurrently from four client stacks to one
//                            server stack, then on each a 40-byte request and a 200-byte
//                            response, then close by both sides (server first, so TIME-WAIT
//                            stays on the server as with HTTP/1.0); virtual time moves 1 s per
//                            batch (B/1000 s for B > 1000), so TIME-WAITs of the last ~60 s stay
//                            behind and expire as in a steady state. B is at most 4000, the
//                            listener's SYN-queue limit. Time per connection (both ends' stacks, all
//                            segments, delivered instantly). Counter conn_time = s/connection.
//   BM_SegmentWithIdle/N     An in-order 1448-byte data segment arriving on one busy connection
//                            (and the stack's ACK, and the application's read), with N other
//                            idle ESTABLISHED connections in the same stack.
//   BM_UnknownTupleRst/N     An ACK for a 4-tuple the stack does not know (the RST path), with N
//                            idle connections present.
// Idle connections are opened by a scripted peer (raw SYN / ACK frames) from many addresses.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <memory_resource>
#include <vector>

#include "stack/stack.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"
#include "tests/stack/scale/scale_net.h"
#include "tests/stack/tcp_frame.h"

namespace shake {
namespace {

namespace flag = wire::tcpflag;

// ---- connection rate ------------------------------------------------------------------------

void BM_ConnectionRate(benchmark::State& state) {
  const auto batch = static_cast<size_t>(state.range(0));
  constexpr size_t kClients = 4;
  constexpr size_t kReq = 40, kResp = 200;
  scale::Net net(kClients);
  Stack& srv = *net.server().stack;
  const SocketId l = *srv.Open();
  (void)srv.Bind(l, Endpoint{Ipv4Addr(), 80});
  (void)srv.Listen(l, 4096);
  std::vector<SocketId> cs(batch), ss;
  ss.reserve(batch);
  std::vector<std::byte> req(kReq, std::byte{0x11}), resp(kResp, std::byte{0x22}), buf(4096);
  uint64_t failures = 0;
  // Virtual time per batch: 1 s, more for large batches so that TIME-WAIT (60 s) never holds
  // more than ~15k of a client's ~28k ephemeral ports.
  const Duration step = Duration::Seconds(static_cast<int64_t>(std::max<size_t>(1, batch / 1000)));
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) {
      Stack& c = *net.client(i % kClients).stack;
      cs[i] = *c.Open();
      if (c.Connect(net.now, cs[i], Endpoint{scale::Net::kServerAddr, 80}).error() != EINPROGRESS)
        ++failures;
    }
    net.Pump();
    ss.clear();
    for (;;) {
      auto a = srv.Accept(l);
      if (!a.ok()) break;
      ss.push_back(*a);
    }
    for (size_t i = 0; i < batch; ++i) (void)net.client(i % kClients).stack->Send(cs[i], req);
    net.Pump();
    for (SocketId s : ss) {
      auto n = srv.Recv(s, buf);
      if (!n.ok() || *n != kReq) ++failures;
      (void)srv.Send(s, resp);
      srv.Close(net.now, s);
    }
    net.Pump();
    for (size_t i = 0; i < batch; ++i) {
      Stack& c = *net.client(i % kClients).stack;
      auto n = c.Recv(cs[i], buf);
      if (!n.ok() || *n != kResp) ++failures;
      c.Close(net.now, cs[i]);
    }
    net.Pump();
    net.now = net.now + step;
  }
  if (failures != 0 || ss.size() != batch) state.SkipWithError("connections failed");
  state.counters["conn_time"] = benchmark::Counter(
      static_cast<double>(state.iterations() * batch),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["server_peak_MiB"] =
      static_cast<double>(net.server().mem.peak()) / (1 << 20);
}
BENCHMARK(BM_ConnectionRate)->Arg(100)->Arg(1000)->Arg(4000)->Unit(benchmark::kMillisecond);

// ---- a stack with many idle connections, driven by raw frames --------------------------------

constexpr Ipv4Addr kUs(198, 18, 0, 1);

using Sink = testing::LastSegmentSink;

struct Flow {
  Ipv4Addr addr;
  uint16_t port = 0;
  SeqNum seq{0x10000000};
  SeqNum ack;
  uint32_t ts = 100;
  uint32_t ts_ecr = 0;
};

std::vector<std::byte> Frame(Flow& f, uint16_t dst_port, uint8_t flags, size_t payload_len,
                             bool syn = false) {
  wire::TcpHeader h;
  h.src_port = f.port;
  h.dst_port = dst_port;
  h.seq = f.seq;
  h.ack = f.ack;
  h.flags = flags;
  h.window = syn ? 65535 : 32768;
  h.options.timestamp = wire::TcpTimestamp{f.ts++, f.ts_ecr};
  if (syn) {
    h.options.mss = 1460;
    h.options.sack_permitted = true;
    h.options.window_scale = 7;
  }
  return testing::TcpFrame(f.addr, kUs, h, testing::CountingBytes(payload_len));
}

struct Server {
  std::unique_ptr<std::pmr::unsynchronized_pool_resource> mem =
      std::make_unique<std::pmr::unsynchronized_pool_resource>();
  std::unique_ptr<Stack> stack;
  Sink sink;
  Instant now = Instant::FromNanos(1'000'000'000);
  SocketId listener = kNoSocket;

  Server() {
    StackConfig c;
    c.addr = kUs;
    c.prefix_len = 15;
    c.tcp.recv_buffer = 4 << 20;
    stack = std::make_unique<Stack>(c, mem.get());
    listener = *stack->Open();
    (void)stack->Bind(listener, Endpoint{Ipv4Addr(), 80});
    (void)stack->Listen(listener, 4096);
  }
  // A handshake from `f`; returns the accepted socket.
  SocketId Open(Flow& f) {
    stack->Receive(now, Frame(f, 80, flag::kSyn, 0, true), sink);
    f.seq += 1;
    f.ack = sink.last.seq + 1;
    if (sink.last.options.timestamp) f.ts_ecr = sink.last.options.timestamp->val;
    stack->Receive(now, Frame(f, 80, flag::kAck, 0), sink);
    auto s = stack->Accept(listener);
    return s.ok() ? *s : kNoSocket;
  }
  // `n` idle connections from 198.18.2.0/23.. addresses, 50,000 ports each.
  bool OpenIdle(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      Flow f;
      f.addr = Ipv4Addr(Ipv4Addr(198, 18, 2, 1).value() + static_cast<uint32_t>(i / 50000));
      f.port = static_cast<uint16_t>(10000 + i % 50000);
      if (Open(f) == kNoSocket) return false;
      now = now + Duration::Micros(1);
    }
    // Let handshake-era timers lapse.
    now = now + Duration::Seconds(5);
    stack->Poll(now, sink);
    return true;
  }
};

void BM_SegmentWithIdle(benchmark::State& state) {
  Server s;
  if (!s.OpenIdle(static_cast<size_t>(state.range(0)))) {
    state.SkipWithError("idle connections failed");
    return;
  }
  Flow f;
  f.addr = Ipv4Addr(198, 18, 1, 1);
  f.port = 40000;
  const SocketId sock = s.Open(f);
  std::vector<std::byte> rbuf(1 << 16);
  std::vector<std::vector<std::byte>> batch;
  size_t next = 0;
  s.sink.parse = false;
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      batch.clear();
      for (int i = 0; i < 1024; ++i) {
        batch.push_back(Frame(f, 80, flag::kAck | flag::kPsh, 1448));
        f.seq += 1448u;
      }
      next = 0;
      state.ResumeTiming();
    }
    s.now = s.now + Duration::Micros(10);
    s.stack->Receive(s.now, batch[next++], s.sink);
    auto r = s.stack->Recv(sock, rbuf);
    benchmark::DoNotOptimize(r);
    s.stack->Poll(s.now, s.sink);
  }
  auto info = s.stack->Info(sock);
  if (!info.ok() || info.value().state != TcpState::kEstablished)
    state.SkipWithError("not established");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SegmentWithIdle)->Arg(0)->Arg(100000);

void BM_UnknownTupleRst(benchmark::State& state) {
  Server s;
  if (!s.OpenIdle(static_cast<size_t>(state.range(0)))) {
    state.SkipWithError("idle connections failed");
    return;
  }
  // ACKs from 1024 different unknown tuples to a port nobody listens on.
  std::vector<std::vector<std::byte>> frames;
  for (int i = 0; i < 1024; ++i) {
    Flow f;
    f.addr = Ipv4Addr(198, 18, 3, static_cast<uint8_t>(i & 0xff));
    f.port = static_cast<uint16_t>(20000 + i);
    f.ack = SeqNum(12345);
    frames.push_back(Frame(f, 8080, flag::kAck, 0));
  }
  s.sink.parse = false;
  size_t next = 0;
  for (auto _ : state) {
    s.stack->Receive(s.now, frames[next], s.sink);
    next = (next + 1) & 1023;
  }
  state.counters["rst_per_seg"] =
      static_cast<double>(s.stack->counters().tcp_resets_out) /
      static_cast<double>(state.iterations());
}
BENCHMARK(BM_UnknownTupleRst)->Arg(0)->Arg(100000);

}  // namespace
}  // namespace shake
