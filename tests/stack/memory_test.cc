// The stack-wide memory budget (TcpConfig::memory_limit, Linux's tcp_mem): what connections
// hold is accounted; under pressure windows stop growing; at the limit segments needing new
// memory are dropped before they are stored and sends take only memory already held; and all
// of it recovers once memory is freed.
#include <gtest/gtest.h>

#include <vector>

#include "stack/tcp/byte_queue.h"
#include "tests/stack/tcp_harness.h"

namespace shake::testing {
namespace {

constexpr SeqNum kPeerIsn(5000);
constexpr uint32_t kChunk = ByteQueue::kChunkSize;

class Readiness final : public StackObserver {
 public:
  void OnReadiness(SocketId id) override { ids.push_back(id); }
  bool Heard(SocketId id) const {
    for (SocketId i : ids) {
      if (i == id) return true;
    }
    return false;
  }
  std::vector<SocketId> ids;
};

class MemoryTest : public ::testing::Test {
 protected:
  static StackConfig Config(size_t low, size_t pressure, size_t limit) {
    StackConfig c = TcpHarness::DefaultConfig();
    c.tcp.recv_buffer = 256 * 1024;
    c.tcp.send_buffer = 256 * 1024;
    c.tcp.memory_low = low;
    c.tcp.memory_pressure = pressure;
    c.tcp.memory_limit = limit;
    return c;
  }

  void Make(size_t low, size_t pressure, size_t limit) {
    h_ = std::make_unique<TcpHarness>(Config(low, pressure, limit));
    h_->stack().SetObserver(&ready_);
    auto l = h_->stack().Open();
    ASSERT_TRUE(h_->stack().Bind(*l, Endpoint{Ipv4Addr(), kServerPort}).ok());
    ASSERT_TRUE(h_->stack().Listen(*l, 8).ok());
    listener_ = *l;
  }

  struct Conn {
    uint16_t port = 0;
    SocketId id = kNoSocket;
    SeqNum iss;
  };

  // An accepted connection from peer port `port`: MSS 1460, window scale 7, SACK.
  Conn Accept(uint16_t port) {
    Conn c;
    c.port = port;
    Seg syn;
    syn.src_port = port;
    syn.flags = f::kSyn;
    syn.seq = kPeerIsn;
    syn.options.mss = 1460;
    syn.options.window_scale = 7;
    syn.options.sack_permitted = true;
    auto out = h_->Deliver(syn);
    EXPECT_EQ(out.size(), 1u);
    if (out.empty()) return c;
    c.iss = out[0].seq;
    EXPECT_TRUE(h_->Deliver(Data(c, 1, 1, 0)).empty());
    auto a = h_->stack().Accept(listener_);
    EXPECT_TRUE(a.ok());
    c.id = a.ok() ? *a : kNoSocket;
    return c;
  }

  // A segment of `len` bytes from the peer of `c` at sequence offset `seq_off` (1 is the first
  // data byte), acknowledging our `ack_off`; byte i of the stream is (i % 251).
  static Seg Data(const Conn& c, uint32_t seq_off, uint32_t ack_off, size_t len,
                  uint8_t flags = f::kAck) {
    Seg s;
    s.src_port = c.port;
    s.flags = flags;
    s.seq = kPeerIsn + seq_off;
    s.ack = c.iss + ack_off;
    s.window = 65535;
    for (size_t i = 0; i < len; ++i) {
      s.payload.push_back(static_cast<std::byte>((seq_off - 1 + i) % 251));
    }
    return s;
  }

  // Reads everything readable from `c` and checks it continues the stream at `*offset`.
  size_t ReadAll(const Conn& c, uint64_t* offset) {
    std::vector<std::byte> buf(1 << 20);
    auto r = h_->stack().Recv(c.id, buf);
    if (!r.ok()) return 0;
    for (size_t i = 0; i < *r; ++i) {
      EXPECT_EQ(buf[i], static_cast<std::byte>((*offset + i) % 251)) << "byte " << *offset + i;
    }
    *offset += *r;
    return *r;
  }

  const Counters& counters() { return h_->stack().counters(); }
  MemoryUse use() { return h_->stack().Memory(); }

  // Fills `c` with out-of-order segments, one per chunk from chunk 2 on, until the account
  // reaches `level`; returns the sequence offset of the next chunk.
  uint32_t Hoard(const Conn& c, size_t level) {
    uint32_t off = 2 * kChunk + 100;
    for (int i = 0; i < 64 && use().allocated < level; ++i) {
      h_->Deliver(Data(c, off, 1, 1000));
      off += kChunk;
    }
    EXPECT_GE(use().allocated, level);
    hoard_end_ = off - kChunk + 1000;
    return off;
  }
  // The peer of `c` shuts its window, and `n` bytes are queued to it (all accepted).
  void QueueBehindShutWindow(const Conn& c, size_t n) {
    Seg shut = Data(c, 1, 1, 0);
    shut.window = 0;
    h_->Deliver(shut);
    std::vector<std::byte> data(n, std::byte{'z'});
    auto r = h_->stack().Send(c.id, data);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, n);
    h_->Flush();
  }
  // Fills the holes of the hoard in order, reading as it goes: the memory is given back.
  void Release(const Conn& c) {
    uint64_t got = 0;
    for (uint32_t off = 1; off < hoard_end_;) {
      const uint32_t n = std::min<uint32_t>(16'000, hoard_end_ - off);
      h_->Deliver(Data(c, off, 1, n));
      off += n;
      ReadAll(c, &got);
    }
    EXPECT_EQ(got, hoard_end_ - 1);
  }

  std::unique_ptr<TcpHarness> h_;
  Readiness ready_;
  SocketId listener_ = kNoSocket;
  uint32_t hoard_end_ = 0;
};

TEST_F(MemoryTest, AccountsWhatConnectionsHoldAndReportsTheLevels) {
  Make(20'000, 40'000, 100'000);
  EXPECT_EQ(use().limit, 100'000u);
  EXPECT_EQ(use().pressure, 40'000u);
  EXPECT_EQ(use().low, 20'000u);
  Conn a = Accept(40001);
  const size_t idle = use().allocated;
  EXPECT_LT(idle, 4096u) << "an idle connection holds no data memory";
  // One out-of-order segment: a large chunk and the range table.
  h_->Deliver(Data(a, 3 * kChunk, 1, 1000));
  EXPECT_GE(use().allocated, idle + kChunk);
  EXPECT_FALSE(use().under_pressure);
  // The hole filled and everything read: the memory is given back.
  uint64_t got = 0;
  h_->Deliver(Data(a, 1, 1, 3 * kChunk - 1));
  EXPECT_EQ(ReadAll(a, &got), 3 * kChunk + 999);
  EXPECT_EQ(use().allocated, idle);
  EXPECT_GE(use().peak, idle + 3 * kChunk);
}

TEST_F(MemoryTest, DefaultLevelsFollowLinuxRatios) {
  Make(0, 0, 90'000);
  EXPECT_EQ(use().pressure, 60'000u);
  EXPECT_EQ(use().low, 45'000u);
  h_ = std::make_unique<TcpHarness>(Config(0, 0, 0));
  EXPECT_EQ(h_->stack().Memory().limit, 0u) << "no limit by default";
  EXPECT_EQ(h_->stack().Memory().pressure, 0u);
}

TEST_F(MemoryTest, AtTheLimitOutOfOrderSegmentsNeedingMemoryAreDropped) {
  Make(20'000, 30'000, 50'000);
  Conn a = Accept(40001);
  const uint32_t next = Hoard(a, 50'000);
  const uint64_t ooo_before = counters().tcp_ooo_segments_in;
  const size_t held = use().allocated;
  // A segment in a chunk not yet held: dropped unstored, no ACK (Linux's TCPOFODrop path).
  EXPECT_TRUE(h_->Deliver(Data(a, next, 1, 1000)).empty());
  EXPECT_EQ(counters().tcp_ofo_mem_drops, 1u);
  EXPECT_EQ(use().allocated, held);
  EXPECT_EQ(counters().tcp_ooo_segments_in, ooo_before);
  // One into a chunk already held needs nothing new: stored and SACKed.
  auto out = h_->Deliver(Data(a, next - kChunk + 1000, 1, 500));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_GT(out[0].options.sack_count, 0);
  EXPECT_EQ(counters().tcp_ofo_mem_drops, 1u);
  EXPECT_EQ(use().allocated, held);
}

TEST_F(MemoryTest, AtTheLimitInOrderDataIsTakenOnlyIntoAnEmptyQueue) {
  Make(20'000, 30'000, 50'000);
  Conn a = Accept(40001);
  Hoard(a, 50'000);
  // The receive queue is empty: in-order data is taken even though it needs a chunk (Linux's
  // sk_forced_mem_schedule), so the connection makes progress.
  auto out = h_->Deliver(Data(a, 1, 1, 1000));
  EXPECT_EQ(counters().tcp_rcvq_drops, 0u);
  EXPECT_EQ(h_->stack().Info(a.id).value().readable_bytes, 1000u);
  // In chunk 0, already held: taken.
  h_->Deliver(Data(a, 1001, 1, 1000));
  EXPECT_EQ(h_->stack().Info(a.id).value().readable_bytes, 2000u);
  // Reaching into chunk 1 (not held) while 2000 bytes wait for the reader: dropped, no ACK.
  ready_.ids.clear();
  EXPECT_TRUE(h_->Deliver(Data(a, 2001, 1, kChunk)).empty());
  EXPECT_EQ(counters().tcp_rcvq_drops, 1u);
  EXPECT_EQ(h_->stack().Info(a.id).value().readable_bytes, 2000u);
  EXPECT_TRUE(ready_.Heard(a.id)) << "the reader is woken to free memory";
  // The application reads; the peer's retransmission is then taken and acknowledged.
  uint64_t got = 0;
  EXPECT_EQ(ReadAll(a, &got), 2000u);
  out = h_->Deliver(Data(a, 2001, 1, kChunk));
  EXPECT_EQ(h_->stack().Info(a.id).value().readable_bytes, kChunk);
  bool acked = false;
  for (const Seg& s : out) acked = acked || s.ack == kPeerIsn + 2001 + kChunk;
  EXPECT_TRUE(acked);
  EXPECT_EQ(ReadAll(a, &got), kChunk);
  EXPECT_EQ(got, 2000 + kChunk);
}

TEST_F(MemoryTest, UnderPressureTheWindowStopsGrowingAndGrowsAgainAfter) {
  Make(20'000, 40'000, 1'000'000);
  Conn a = Accept(40001);
  Conn b = Accept(40002);
  // Data in and read on A: its window grows beyond the SYN-ACK's 65,535 bytes.
  uint64_t got = 0;
  uint32_t off = 1;
  auto edge_of = [](const Seg& s) {
    return s.ack + (static_cast<uint32_t>(s.window) << 3);  // our window scale for 256 KiB
  };
  h_->Deliver(Data(a, off, 1, 1000));
  off += 1000;
  ReadAll(a, &got);
  auto out = h_->Deliver(Data(a, off, 1, 1000));
  off += 1000;
  ASSERT_FALSE(out.empty());
  const SeqNum free_edge = edge_of(out.back());
  EXPECT_GT(static_cast<uint32_t>(free_edge - (kPeerIsn + off)), 200'000u);
  // B hoards past the pressure level.
  Hoard(b, 40'001);
  EXPECT_TRUE(use().under_pressure);
  EXPECT_EQ(counters().tcp_mem_pressures, 1u);
  // A's next ACK does not move the right edge it offered.
  ReadAll(a, &got);
  out = h_->Deliver(Data(a, off, 1, 1000));
  off += 1000;
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(edge_of(out.back()), free_edge);
  // B's hole is filled and read: memory falls below the low mark, pressure ends, and A's
  // window grows again.
  Release(b);
  EXPECT_FALSE(use().under_pressure);
  EXPECT_LT(use().allocated, 20'000u);
  ReadAll(a, &got);
  out = h_->Deliver(Data(a, off, 1, 1000));
  off += 1000;
  ASSERT_FALSE(out.empty());
  EXPECT_GT(edge_of(out.back()), free_edge);
  EXPECT_EQ(ReadAll(a, &got), 1000u);
  EXPECT_EQ(got, off - 1);
}

TEST_F(MemoryTest, AtTheLimitSendsTakeOnlyHeldMemoryAndWritersWakeOnRelief) {
  Make(20'000, 30'000, 50'000);
  Conn a = Accept(40001);
  Conn b = Accept(40002);
  Hoard(b, 50'000);
  // A holds no send memory: it may still queue one small chunk's worth (progress).
  std::vector<std::byte> data(10'000, std::byte{'s'});
  auto r = h_->stack().Send(a.id, data);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, ByteQueue::kSmallChunkSize);
  EXPECT_EQ(counters().tcp_send_mem_limited, 1u);
  // Then nothing more, and the socket is not writable (poll would not spin on EAGAIN).
  r = h_->stack().Send(a.id, data);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), EAGAIN);
  EXPECT_EQ(h_->stack().Readiness(a.id) & ready::kWritable, 0u);
  // B's hole filled and read frees memory: A hears of it and may write again.
  ready_.ids.clear();
  Release(b);
  EXPECT_LT(use().allocated, 50'000u);
  EXPECT_TRUE(ready_.Heard(a.id));
  EXPECT_NE(h_->stack().Readiness(a.id) & ready::kWritable, 0u);
  r = h_->stack().Send(a.id, data);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, data.size());
}

TEST_F(MemoryTest, AtTheLimitAnOrphanHoldingSendMemoryIsResetAtItsTimer) {
  Make(20'000, 30'000, 60'000);
  Conn a = Accept(40001);
  QueueBehindShutWindow(a, 20'000);
  h_->stack().Close(h_->now(), a.id);  // an orphan in FIN-WAIT-1 with 20,000 bytes unsent
  h_->Flush();
  EXPECT_EQ(counters().tcp_abort_on_memory, 0u) << "below the limit, the orphan lives on";
  Conn b = Accept(40002);
  Hoard(b, 60'000);
  const size_t held = use().allocated;
  // The persist timer fires: Linux's tcp_out_of_resources resets the orphan.
  bool reset = false;
  for (int i = 0; i < 40 && !reset; ++i) {
    for (const Seg& s : h_->Advance(Duration::Seconds(5))) {
      reset = reset || (s.dst_port == 40001 && (s.flags & f::kRst) != 0);
    }
  }
  EXPECT_TRUE(reset);
  EXPECT_EQ(counters().tcp_abort_on_memory, 1u);
  EXPECT_LE(use().allocated + 2 * kChunk, held) << "its send queue was given back";
}

TEST_F(MemoryTest, AtTheLimitClosingWithMuchUnsentResets) {
  Make(20'000, 30'000, 60'000);
  Conn a = Accept(40001);
  QueueBehindShutWindow(a, 20'000);
  Conn b = Accept(40002);
  Hoard(b, 60'000);
  h_->stack().Close(h_->now(), a.id);
  bool reset = false;
  for (const Seg& s : h_->Flush()) {
    reset = reset || (s.dst_port == 40001 && (s.flags & f::kRst) != 0);
  }
  EXPECT_TRUE(reset) << "Linux's tcp_close resets an orphan it cannot afford";
  EXPECT_EQ(counters().tcp_abort_on_memory, 1u);
}

TEST_F(MemoryTest, ClosingGivesOutOfOrderDataBack) {
  Make(0, 0, 1'000'000);
  Conn a = Accept(40001);
  const size_t idle = use().allocated;
  h_->Deliver(Data(a, 3 * kChunk, 1, 1000));
  EXPECT_GT(use().allocated, idle + kChunk);
  h_->stack().Close(h_->now(), a.id);
  h_->Flush();
  EXPECT_LE(use().allocated, idle);
}

TEST_F(MemoryTest, WithoutALimitNothingIsDropped) {
  Make(0, 0, 0);
  Conn a = Accept(40001);
  uint32_t off = 2 * kChunk + 100;
  for (int i = 0; i < 12; ++i, off += kChunk) h_->Deliver(Data(a, off, 1, 1000));
  EXPECT_EQ(counters().tcp_ofo_mem_drops, 0u);
  EXPECT_FALSE(use().under_pressure);
  EXPECT_GT(use().allocated, 12 * kChunk);
}

}  // namespace
}  // namespace shake::testing
