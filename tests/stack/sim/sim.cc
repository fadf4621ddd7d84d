#include "tests/stack/sim/sim.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace shake::sim {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

Rng::Rng(uint64_t seed) {
  for (size_t i = 0; i < s_.size(); ++i) {
    seed = SplitMix64(seed);
    s_[i] = seed;
  }
}

uint64_t Rng::Next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

// ---- PatternStream --------------------------------------------------------------------------

namespace {
inline uint64_t Word(uint64_t seed, uint64_t index) {
  // A cheap mix (one multiply) is enough to make any misplaced byte show; SplitMix64's two
  // multiplies cost more than the stack's own per-byte work.
  uint64_t x = (index + seed) * 0x9e3779b97f4a7c15ull;
  return x ^ (x >> 29);
}
}  // namespace

void PatternStream::Fill(uint64_t offset, std::span<std::byte> out) const {
  size_t i = 0;
  uint64_t pos = offset;
  // Unaligned head.
  while (i < out.size() && (pos & 7) != 0) {
    out[i++] = static_cast<std::byte>(Word(seed_, pos >> 3) >> ((pos & 7) * 8));
    ++pos;
  }
  for (; i + 8 <= out.size(); i += 8, pos += 8) {
    const uint64_t w = Word(seed_, pos >> 3);
    std::memcpy(out.data() + i, &w, 8);  // little-endian byte order of the word
  }
  while (i < out.size()) {
    out[i++] = static_cast<std::byte>(Word(seed_, pos >> 3) >> ((pos & 7) * 8));
    ++pos;
  }
}

size_t PatternStream::Verify(uint64_t offset, std::span<const std::byte> data) const {
  std::byte tmp[4096];
  size_t done = 0;
  while (done < data.size()) {
    const size_t n = std::min(sizeof tmp, data.size() - done);
    Fill(offset + done, std::span<std::byte>(tmp, n));
    if (std::memcmp(tmp, data.data() + done, n) != 0) {
      for (size_t i = 0; i < n; ++i) {
        if (tmp[i] != data[done + i]) return done + i;
      }
    }
    done += n;
  }
  return data.size();
}

// ---- Network --------------------------------------------------------------------------------

class Network::Sink final : public FrameSink {
 public:
  Sink(Network& net, int side) : net_(net), side_(side), buf_(65536 + 64) {}
  std::span<std::byte> Acquire(size_t max_len) override {
    if (max_len > buf_.size()) return {};
    return {buf_.data(), max_len};
  }
  void Commit(size_t len) override { net_.Transmit(side_, {buf_.data(), len}); }

 private:
  Network& net_;
  int side_;
  std::vector<std::byte> buf_;
};

namespace {
bool TraceEnabled() {
  static const bool on = [] {
    const char* s = std::getenv("SHAKE_SIM_TRACE");
    return s != nullptr && *s != '\0' && *s != '0';
  }();
  return on;
}

std::string FlagString(uint8_t f) {
  std::string s;
  const char* names = "FSRPAUEC";
  for (int i = 0; i < 8; ++i) {
    if ((f & (1u << i)) != 0) s += names[i];
  }
  return s.empty() ? "." : s;
}
}  // namespace

// Records state changes; with SHAKE_SIM_TRACE=1 also prints every segment (a tcpdump of sorts).
class Network::Observer final : public StackObserver {
 public:
  Observer(std::vector<TcpState>& log, int side) : log_(log), side_(side) {}
  void OnTrace(const TraceEvent& e) override {
    if (e.kind == TraceEvent::Kind::kStateChange) log_.push_back(e.to);
    if (!TraceEnabled()) return;
    const double t = static_cast<double>(e.time.nanos()) / 1e9;
    switch (e.kind) {
      case TraceEvent::Kind::kSegmentIn:
      case TraceEvent::Kind::kSegmentOut:
        std::printf("%.6f %c %s %-4s seq=%u ack=%u len=%u win=%u\n", t, "AB"[side_],
                    e.kind == TraceEvent::Kind::kSegmentIn ? "<in " : "out>",
                    FlagString(e.flags).c_str(), e.seq.raw(), e.ack.raw(), e.len, e.window);
        break;
      case TraceEvent::Kind::kStateChange:
        std::printf("%.6f %c state %s -> %s\n", t, "AB"[side_], std::string(StateName(e.from)).c_str(),
                    std::string(StateName(e.to)).c_str());
        break;
      case TraceEvent::Kind::kDrop:
        std::printf("%.6f %c drop %s\n", t, "AB"[side_], std::string(DropName(e.drop)).c_str());
        break;
    }
  }

 private:
  std::vector<TcpState>& log_;
  int side_;
};

Network::Network(const NetworkParams& p) : params_(p), rng_(SplitMix64(p.seed ^ 0x5157)), now_(p.start) {
  for (int i = 0; i < 2; ++i) {
    Side& s = sides_[i];
    s.config = i == 0 ? p.a : p.b;
    s.config.link = LinkMode::kIp;
    if (s.config.addr.is_unspecified()) s.config.addr = Ipv4Addr(198, 18, 0, static_cast<uint8_t>(i + 1));
    if (s.config.seed == 0) s.config.seed = SplitMix64(p.seed * 2 + static_cast<uint64_t>(i));
    bool zero_secret = true;
    for (uint8_t b : s.config.isn_secret) zero_secret = zero_secret && b == 0;
    if (zero_secret) {
      uint64_t k = SplitMix64(p.seed ^ (0xabcdull + static_cast<uint64_t>(i)));
      for (size_t j = 0; j < s.config.isn_secret.size(); ++j) {
        if (j % 8 == 0) k = SplitMix64(k);
        s.config.isn_secret[j] = static_cast<uint8_t>(k >> ((j % 8) * 8));
      }
    }
    std::pmr::memory_resource* mem = std::pmr::new_delete_resource();
    if (p.pool_allocator) {
      s.pool = std::make_unique<std::pmr::unsynchronized_pool_resource>();
      mem = s.pool.get();
    }
    s.stack = std::make_unique<Stack>(s.config, mem);
    s.sink = std::make_unique<Sink>(*this, i);
    s.observer = std::make_unique<Observer>(s.states, i);
    s.stack->SetObserver(s.observer.get());
    s.link_busy_until = now_;
  }
}

Network::~Network() {
  // The stacks go before their pool resources.
  for (Side& s : sides_) s.stack.reset();
}

uint32_t Network::TakeBuffer() {
  if (!free_buffers_.empty()) {
    const uint32_t b = free_buffers_.back();
    free_buffers_.pop_back();
    return b;
  }
  buffers_.emplace_back();
  return static_cast<uint32_t>(buffers_.size() - 1);
}

void Network::Transmit(int from, std::span<const std::byte> frame) {
  Side& s = sides_[from];
  const Impairments& imp = from == 0 ? params_.a_to_b : params_.b_to_a;
  s.wire.frames++;
  s.wire.bytes += frame.size();
  // Serialization at the link rate: frames queue behind each other (no queue limit, so the
  // only losses are the configured ones).
  Instant depart = std::max(now_, s.link_busy_until);
  if (imp.rate_bps != 0) {
    depart = depart + Duration::Nanos(static_cast<int64_t>(frame.size() * 8 * 1'000'000'000ull /
                                                           imp.rate_bps));
  }
  s.link_busy_until = depart;
  if (rng_.Chance(imp.loss)) {
    s.wire.lost++;
    if (TraceEnabled()) std::printf("%.6f %c wire: lost\n", static_cast<double>(now_.nanos()) / 1e9, "AB"[from]);
    return;
  }
  int copies = 1;
  if (rng_.Chance(imp.duplicate)) {
    s.wire.duplicated++;
    copies = 2;
    if (TraceEnabled()) std::printf("%.6f %c wire: duplicated\n", static_cast<double>(now_.nanos()) / 1e9, "AB"[from]);
  }
  for (int c = 0; c < copies; ++c) {
    Instant when = depart + imp.delay;
    if (imp.jitter > Duration::Zero())
      when = when + Duration::Nanos(static_cast<int64_t>(rng_.Below(static_cast<uint64_t>(imp.jitter.nanos()))));
    if (rng_.Chance(imp.reorder)) {
      s.wire.reordered++;
      when = when + imp.reorder_delay;
    }
    const uint32_t b = TakeBuffer();
    std::vector<std::byte>& buf = buffers_[b];
    buf.assign(frame.begin(), frame.end());
    bool corrupted = false;
    if (!buf.empty() && rng_.Chance(imp.corrupt)) {
      // One bit: the Internet checksum catches every single-bit error, so the receiver must
      // drop this frame.
      const uint64_t bit = rng_.Below(buf.size() * 8);
      buf[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
      s.wire.corrupted++;
      corrupted = true;
      if (TraceEnabled()) std::printf("%.6f %c wire: bit %llu flipped\n", static_cast<double>(now_.nanos()) / 1e9, "AB"[from], static_cast<unsigned long long>(bit));
    }
    queue_.push(Event{when, order_++, 1 - from, b, corrupted});
  }
}

void Network::Deliver(const Event& e) {
  Side& to = sides_[e.to];
  std::vector<std::byte>& buf = buffers_[e.buf];
  if (!e.corrupted && !TraceEnabled()) {
    to.stack->Receive(now_, buf, *to.sink);
  } else if (!e.corrupted) {
    const Counters before = to.stack->counters();
    to.stack->Receive(now_, buf, *to.sink);
    const Counters& after = to.stack->counters();
    for (size_t i = 0; i < after.drops.size(); ++i) {
      if (after.drops[i] != before.drops[i]) {
        std::printf("%.6f %c counted drop %s\n", static_cast<double>(now_.nanos()) / 1e9,
                    "AB"[e.to], std::string(DropName(static_cast<Drop>(i))).c_str());
      }
    }
    if (after.tcp_challenge_acks != before.tcp_challenge_acks) {
      std::printf("%.6f %c counted challenge ack\n", static_cast<double>(now_.nanos()) / 1e9,
                  "AB"[e.to]);
    }
  } else {
    const Counters before = to.stack->counters();
    to.stack->Receive(now_, buf, *to.sink);
    const Counters& after = to.stack->counters();
    WireStats& ws = sides_[1 - e.to].wire;
    bool caught = after.total_drops() == before.total_drops() + 1 &&
                  after.tcp_segments_in == before.tcp_segments_in;
    Drop reason = Drop::kNone;
    for (size_t i = 0; i < after.drops.size(); ++i) {
      if (after.drops[i] != before.drops[i]) reason = static_cast<Drop>(i);
    }
    switch (reason) {
      case Drop::kTruncated: case Drop::kBadIpVersion: case Drop::kBadIpHeaderLen:
      case Drop::kBadIpTotalLen: case Drop::kBadIpChecksum: case Drop::kBadTcpHeaderLen:
      case Drop::kBadTcpChecksum:
        break;
      default:
        caught = false;
    }
    if (caught) {
      ws.corrupt_caught++;
      ws.corrupt_reasons[static_cast<size_t>(reason)]++;
    } else if (wire_failure_.empty()) {
      std::ostringstream o;
      o << "corrupted frame to side " << e.to << " at t=" << now_.nanos()
        << "ns was not dropped as a header/checksum error (drop reason "
        << DropName(reason) << ", segments_in " << before.tcp_segments_in << "->"
        << after.tcp_segments_in << ")";
      wire_failure_ = o.str();
    }
  }
  free_buffers_.push_back(e.buf);
}

bool Network::Quiet() const {
  if (!queue_.empty()) return false;
  for (const Side& s : sides_) {
    if (!s.deadline.is_never()) return false;
    for (size_t n : s.stack->ConnectionsByState()) {
      if (n != 0) return false;
    }
  }
  return true;
}

RunResult Network::Run(App& app, const RunLimits& limits) {
  RunResult r;
  const Instant start = now_;
  app.Start(*this);
  for (;;) {
    app.Step(*this);
    for (Side& s : sides_) s.deadline = s.stack->Poll(now_, *s.sink);
    if (!app.Failure().empty() || !wire_failure_.empty()) {
      r.failure = !app.Failure().empty() ? app.Failure() : wire_failure_;
      break;
    }
    Instant next = Instant::Never();
    if (!queue_.empty()) next = queue_.top().when;
    for (const Side& s : sides_) next = Min(next, s.deadline);
    if (next.is_never()) {
      if (app.Done() && Quiet()) {
        r.ok = true;
      } else {
        r.failure = app.Done() ? "connections left after the close and no timer to end them"
                               : "stalled: no frame in flight and no timer pending";
      }
      break;
    }
    if (next < now_) next = now_;
    if (next - start > limits.max_virtual) {
      r.failure = "virtual-time limit of " + std::to_string(limits.max_virtual.millis()) +
                  " ms exceeded";
      break;
    }
    if (++r.events > limits.max_events) {
      r.failure = "event limit of " + std::to_string(limits.max_events) + " exceeded";
      break;
    }
    now_ = next;
    while (!queue_.empty() && queue_.top().when <= now_) {
      const Event e = queue_.top();
      queue_.pop();
      Deliver(e);
    }
  }
  r.end = now_;
  return r;
}

// ---- BulkTransfer ---------------------------------------------------------------------------

BulkTransfer::BulkTransfer(uint64_t seed, uint64_t bytes_0_to_1, uint64_t bytes_1_to_0,
                           uint16_t port)
    : streams_{PatternStream(SplitMix64(seed ^ 0xa0)), PatternStream(SplitMix64(seed ^ 0xb1))},
      port_(port),
      rbuf_(256 * 1024) {
  ends_[0].to_send = bytes_0_to_1;
  ends_[1].expect = bytes_0_to_1;
  ends_[1].to_send = bytes_1_to_0;
  ends_[0].expect = bytes_1_to_0;
  for (End& e : ends_) e.chunk.resize(64 * 1024);
}

void BulkTransfer::Fail(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
}

void BulkTransfer::Start(Network& net) {
  start_ = net.now();
  Stack& b = net.stack(1);
  auto l = b.Open();
  if (!l.ok()) return Fail("listener Open failed");
  listener_ = *l;
  if (!b.Bind(listener_, Endpoint{Ipv4Addr(), port_}).ok()) return Fail("Bind failed");
  if (!b.Listen(listener_, 16).ok()) return Fail("Listen failed");
  Stack& a = net.stack(0);
  auto s = a.Open();
  if (!s.ok()) return Fail("Open failed");
  ends_[0].sock = *s;
  auto c = a.Connect(net.now(), ends_[0].sock, Endpoint{net.addr(1), port_});
  if (c.error() != EINPROGRESS) return Fail("Connect: errno " + std::to_string(c.error()));
}

void BulkTransfer::Step(Network& net) {
  StepEnd(net, 0);
  StepEnd(net, 1);
  if (Done() && listener_ != kNoSocket) {
    net.stack(1).Close(net.now(), listener_);
    listener_ = kNoSocket;
  }
}

bool BulkTransfer::Done() const { return ends_[0].closed && ends_[1].closed; }

void BulkTransfer::StepEnd(Network& net, int side) {
  End& e = ends_[side];
  Stack& st = net.stack(side);
  if (e.closed) return;
  if (e.sock == kNoSocket) {
    auto a = st.Accept(listener_);
    if (!a.ok()) {
      if (a.error() != EAGAIN) Fail("Accept: errno " + std::to_string(a.error()));
      return;
    }
    e.sock = *a;
  }
  if (!e.connected) {
    const uint32_t rd = st.Readiness(e.sock);
    if ((rd & ready::kError) != 0) {
      return Fail("side " + std::to_string(side) + ": connect failed, errno " +
                  std::to_string(st.TakeError(e.sock)));
    }
    if ((rd & (ready::kWritable | ready::kReadable)) == 0) return;
    e.connected = true;
  }
  // Read everything there is.
  while (!e.eof) {
    auto r = st.Recv(e.sock, rbuf_);
    if (!r.ok()) {
      if (r.error() == EAGAIN) break;
      return Fail("side " + std::to_string(side) + ": Recv errno " + std::to_string(r.error()) +
                  " after " + std::to_string(e.received) + " bytes");
    }
    const size_t n = *r;
    if (n == 0) {
      e.eof = true;
      e.eof_time = net.now();
      if (e.received != e.expect) {
        return Fail("side " + std::to_string(side) + ": end of stream after " +
                    std::to_string(e.received) + " of " + std::to_string(e.expect) + " bytes");
      }
      break;
    }
    if (e.received + n > e.expect) {
      return Fail("side " + std::to_string(side) + ": received more than was sent");
    }
    const size_t bad = streams_[1 - side].Verify(e.received, {rbuf_.data(), n});
    if (bad != n) {
      return Fail("side " + std::to_string(side) + ": data differs at stream offset " +
                  std::to_string(e.received + bad));
    }
    e.received += n;
  }
  // Write as much as the send buffer takes.
  while (e.sent < e.to_send) {
    if (e.chunk_pos == e.chunk_len) {
      e.chunk_len = static_cast<size_t>(std::min<uint64_t>(e.chunk.size(), e.to_send - e.sent));
      e.chunk_pos = 0;
      streams_[side].Fill(e.sent, {e.chunk.data(), e.chunk_len});
    }
    auto w = st.Send(e.sock, {e.chunk.data() + e.chunk_pos, e.chunk_len - e.chunk_pos});
    if (!w.ok()) {
      if (w.error() == EAGAIN) break;
      return Fail("side " + std::to_string(side) + ": Send errno " + std::to_string(w.error()) +
                  " after " + std::to_string(e.sent) + " bytes");
    }
    e.chunk_pos += *w;
    e.sent += *w;
  }
  if (e.sent == e.to_send && !e.shut && shutdown_when_drained_) {
    auto info = st.Info(e.sock);
    if (info.ok() && info.value().unsent_bytes != 0) return;
  }
  if (e.sent == e.to_send && !e.shut) {
    auto s = st.Shutdown(net.now(), e.sock, false, true);
    if (!s.ok()) return Fail("Shutdown: errno " + std::to_string(s.error()));
    e.shut = true;
  }
  if (e.shut && e.eof) {
    st.Close(net.now(), e.sock);
    e.closed = true;
  }
}

std::string FormatStates(const std::vector<TcpState>& states) {
  std::string s;
  for (TcpState t : states) {
    if (!s.empty()) s += " > ";
    s += StateName(t);
  }
  return s;
}

}  // namespace shake::sim
