// Established-path segment processing: ns per segment for
//   BM_DataSegmentIn  an in-order 1448-byte data segment arriving on an established connection,
//                     the stack's ACK for it (every second segment), and the application's read;
//   BM_AckIn          the sender side: the application writes 1448 bytes, Poll sends them as a
//                     segment, and the peer's ACK for that segment arrives and is processed.
// Both use timestamps (as a Linux peer would) and bare IPv4 frames. Frames from the peer are
// built outside the timed region in batches.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <vector>

#include "stack/stack.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"
#include "tests/stack/tcp_frame.h"

namespace shake {
namespace {

namespace flag = wire::tcpflag;
constexpr Ipv4Addr kUs(198, 18, 0, 1);
constexpr Ipv4Addr kPeer(198, 18, 0, 2);
constexpr uint16_t kPeerPort = 40000;
constexpr size_t kSegLen = 1448;

using Sink = testing::LastSegmentSink;

// The peer's half of one connection to the stack's port 80.
struct Peer {
  std::unique_ptr<std::pmr::unsynchronized_pool_resource> mem =
      std::make_unique<std::pmr::unsynchronized_pool_resource>();
  std::unique_ptr<Stack> stack;
  Sink sink;
  Instant now = Instant::FromNanos(1'000'000'000);
  SocketId sock = kNoSocket;
  SeqNum seq{0x10000000};  // the peer's next sequence number
  SeqNum ack;              // what the peer acknowledges
  uint32_t ts = 100;

  std::vector<std::byte> Frame(uint8_t flags, size_t payload_len, bool syn_options = false) {
    wire::TcpHeader h;
    h.src_port = kPeerPort;
    h.dst_port = 80;
    h.seq = seq;
    h.ack = ack;
    h.flags = flags;
    h.window = syn_options ? 65535 : 32768;
    h.options.timestamp = wire::TcpTimestamp{ts++, sink.last.options.timestamp
                                                       ? sink.last.options.timestamp->val
                                                       : 0};
    if (syn_options) {
      h.options.mss = 1460;
      h.options.sack_permitted = true;
      h.options.window_scale = 7;
    }
    return testing::TcpFrame(kPeer, kUs, h, testing::CountingBytes(payload_len));
  }

  Peer() {
    StackConfig c;
    c.addr = kUs;
    c.tcp.recv_buffer = 4 << 20;
    c.tcp.send_buffer = 4 << 20;
    stack = std::make_unique<Stack>(c, mem.get());
    auto l = stack->Open();
    (void)stack->Bind(*l, Endpoint{Ipv4Addr(), 80});
    (void)stack->Listen(*l, 16);
    stack->Receive(now, Frame(flag::kSyn, 0, true), sink);
    seq += 1;
    ack = sink.last.seq + 1;
    stack->Receive(now, Frame(flag::kAck, 0), sink);
    sock = *stack->Accept(*l);
  }
};

void BM_DataSegmentIn(benchmark::State& state) {
  Peer p;
  std::vector<std::byte> rbuf(1 << 16);
  std::vector<std::vector<std::byte>> batch;
  size_t next = 0;
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      batch.clear();
      for (int i = 0; i < 1024; ++i) {
        batch.push_back(p.Frame(flag::kAck | flag::kPsh, kSegLen));
        p.seq += static_cast<uint32_t>(kSegLen);
      }
      next = 0;
      state.ResumeTiming();
    }
    p.now = p.now + Duration::Micros(10);
    p.stack->Receive(p.now, batch[next++], p.sink);
    auto r = p.stack->Recv(p.sock, rbuf);
    benchmark::DoNotOptimize(r);
    p.stack->Poll(p.now, p.sink);
  }
  auto info = p.stack->Info(p.sock);
  if (!info.ok() || info.value().state != TcpState::kEstablished) state.SkipWithError("not established");
  state.counters["acks_per_seg"] =
      static_cast<double>(p.sink.frames) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kSegLen));
}
BENCHMARK(BM_DataSegmentIn);

void BM_AckIn(benchmark::State& state) {
  Peer p;
  std::vector<std::byte> wbuf(kSegLen, std::byte{0x5a});
  SocketOptions o;
  o.no_delay = true;
  (void)p.stack->SetOptions(p.sock, o);
  SeqNum stack_nxt = p.ack;
  std::vector<std::vector<std::byte>> batch;
  size_t next = 0;
  for (auto _ : state) {
    if (next == batch.size()) {
      state.PauseTiming();
      batch.clear();
      for (int i = 0; i < 1024; ++i) {
        stack_nxt += static_cast<uint32_t>(kSegLen);
        p.ack = stack_nxt;
        batch.push_back(p.Frame(flag::kAck, 0));
      }
      next = 0;
      state.ResumeTiming();
    }
    p.now = p.now + Duration::Micros(10);
    auto w = p.stack->Send(p.sock, wbuf);
    benchmark::DoNotOptimize(w);
    p.stack->Poll(p.now, p.sink);
    p.stack->Receive(p.now, batch[next++], p.sink);
  }
  auto info = p.stack->Info(p.sock);
  if (!info.ok() || info.value().state != TcpState::kEstablished) {
    state.SkipWithError("not established");
  } else if (info.value().unsent_bytes != 0) {
    state.SkipWithError("ACKs did not keep up with the data");
  }
  state.counters["frames_per_seg"] =
      static_cast<double>(p.sink.frames) / static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kSegLen));
}
BENCHMARK(BM_AckIn);

}  // namespace
}  // namespace shake
