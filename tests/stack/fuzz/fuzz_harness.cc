#include "tests/stack/fuzz/fuzz_harness.h"

#include <algorithm>
#include <cstring>

#include "stack/wire/checksum.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"

namespace shake::fuzz {

namespace flag = wire::tcpflag;

// ---- InputBuilder ---------------------------------------------------------------------------

void InputBuilder::U16(uint16_t v) {
  U8(static_cast<uint8_t>(v >> 8));
  U8(static_cast<uint8_t>(v & 0xff));
}
void InputBuilder::U32(uint32_t v) {
  U16(static_cast<uint16_t>(v >> 16));
  U16(static_cast<uint16_t>(v & 0xffff));
}

InputBuilder& InputBuilder::Raw(std::span<const std::byte> frame) {
  U8(static_cast<uint8_t>(Op::kRaw));
  U16(static_cast<uint16_t>(frame.size()));
  for (std::byte x : frame) U8(static_cast<uint8_t>(x));
  return *this;
}

InputBuilder& InputBuilder::RawFixed(uint8_t fix_bits, uint8_t conn,
                                     std::span<const std::byte> frame) {
  U8(static_cast<uint8_t>(Op::kRawFixed));
  U8(fix_bits);
  U8(conn);
  U16(static_cast<uint16_t>(frame.size()));
  for (std::byte x : frame) U8(static_cast<uint8_t>(x));
  return *this;
}

void InputBuilder::SegmentFields(const SegmentSpec& s) {
  U8(s.conn);
  U8(s.flags);
  U8(s.mode);
  U32(s.seq);
  U32(s.ack);
  U16(s.window);
  U8(static_cast<uint8_t>(s.options.size()));
  for (uint8_t o : s.options) U8(o);
  U16(s.payload_len);
}

InputBuilder& InputBuilder::Segment(const SegmentSpec& s) {
  U8(static_cast<uint8_t>(Op::kSegment));
  SegmentFields(s);
  return *this;
}

InputBuilder& InputBuilder::Fragments(const SegmentSpec& s, std::span<const Frag> frags) {
  U8(static_cast<uint8_t>(Op::kFragments));
  SegmentFields(s);
  U8(static_cast<uint8_t>(frags.size()));
  for (const Frag& f : frags) {
    U16(f.offset);
    U16(f.len);
    U8(f.more ? 1 : 0);
  }
  return *this;
}

InputBuilder& InputBuilder::Advance(uint32_t micros) {
  U8(static_cast<uint8_t>(Op::kAdvance));
  U32(micros);
  return *this;
}

InputBuilder& InputBuilder::Socket(Call call, uint8_t conn, uint16_t arg) {
  U8(static_cast<uint8_t>(Op::kSocket));
  U8(static_cast<uint8_t>(call));
  U8(conn);
  U16(arg);
  return *this;
}

InputBuilder& InputBuilder::Icmp(uint8_t conn, uint8_t type, uint8_t code, int8_t seq_delta,
                                 uint16_t mtu) {
  U8(static_cast<uint8_t>(Op::kIcmp));
  U8(conn);
  U8(type);
  U8(code);
  U8(static_cast<uint8_t>(seq_delta));
  U16(mtu);
  return *this;
}

InputBuilder& InputBuilder::Poll() {
  U8(static_cast<uint8_t>(Op::kPoll));
  return *this;
}

// ---- Harness --------------------------------------------------------------------------------

class Harness::Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  bool done() const { return pos_ >= in_.size(); }
  uint8_t U8() { return pos_ < in_.size() ? in_[pos_++] : 0; }
  uint16_t U16() {
    const uint16_t hi = U8();
    return static_cast<uint16_t>((hi << 8) | U8());
  }
  uint32_t U32() {
    const uint32_t hi = U16();
    return (hi << 16) | U16();
  }
  // Up to n bytes (fewer at the end of the input).
  std::span<const uint8_t> Bytes(size_t n) {
    n = std::min(n, in_.size() - std::min(pos_, in_.size()));
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Collects the stack's frames; the harness parses them to follow sequence numbers.
class Harness::Sink final : public FrameSink {
 public:
  std::span<std::byte> Acquire(size_t max_len) override {
    buf_.resize(max_len);
    return buf_;
  }
  void Commit(size_t len) override {
    buf_.resize(len);
    frames.push_back(buf_);
  }
  std::vector<std::vector<std::byte>> frames;

 private:
  std::vector<std::byte> buf_;
};

Harness::Harness() : scratch_(70000) {
  // The stack's ISN is a keyed hash plus a 4 us clock: moving the clock by 2^31 * 4 us flips the
  // ISN's top bit, so one retry puts conn 1's ISN at or above 2^31.
  Setup(Instant::FromNanos(int64_t{1'000'000'000}));
  if (conns_[1].stack_iss.raw() < 0x80000000u) {
    Setup(Instant::FromNanos(int64_t{1'000'000'000} + (int64_t{1} << 31) * 4000));
  }
}

Harness::~Harness() {
  stack_.reset();
  arena_.reset();
}

void Harness::Setup(Instant start) {
  stack_.reset();
  arena_ = std::make_unique<std::pmr::monotonic_buffer_resource>(1 << 20);
  sink_ = std::make_unique<Sink>();
  now_ = start;
  conns_ = {};
  extra_sockets_.clear();
  sent_.clear();
  recording_ = false;

  StackConfig c;
  c.link = LinkMode::kIp;
  c.addr = kUs;
  c.prefix_len = 24;
  for (size_t i = 0; i < c.isn_secret.size(); ++i) c.isn_secret[i] = static_cast<uint8_t>(i * 7 + 1);
  c.seed = 42;
  c.tcp.send_buffer = 64 * 1024;
  c.tcp.recv_buffer = 64 * 1024;
  stack_ = std::make_unique<Stack>(c, arena_.get());
  Stack& st = *stack_;

  auto l = st.Open();
  listener_ = l.ok() ? *l : kNoSocket;
  (void)st.Bind(listener_, Endpoint{Ipv4Addr(), 80});
  (void)st.Listen(listener_, 8);

  // conn 0: passive open from the peer.
  ConnView& p = conns_[0];
  p.tuple = FourTuple{Endpoint{kUs, 80}, Endpoint{kPeer, 40000}};
  p.peer_nxt = SeqNum(0xfffffff0u);
  {
    SegmentSpec syn;
    syn.conn = 0;
    syn.flags = flag::kSyn;
    syn.mode = mode::kSeqRelative | mode::kTimestamp;
    syn.window = 65535;
    // MSS 1460, SACK-permitted, window scale 7.
    syn.options = {2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7};
    Deliver(BuildSegment(syn, false));
    p.peer_nxt = p.peer_nxt + 1;
    SegmentSpec ack;
    ack.conn = 0;
    ack.window = 1024;  // scaled by 7: 128 KiB
    Deliver(BuildSegment(ack, false));
    auto a = st.Accept(listener_);
    p.sock = a.ok() ? *a : kNoSocket;
  }

  // conn 1: active open to the peer.
  ConnView& q = conns_[1];
  {
    auto s = st.Open();
    q.sock = s.ok() ? *s : kNoSocket;
    (void)st.Connect(now_, q.sock, Endpoint{kPeer, 443});
    auto info = st.Info(q.sock);
    if (info.ok()) q.tuple = FourTuple{info.value().local, info.value().remote};
    PollNow();  // sends the SYN, which Track() records
    q.peer_nxt = SeqNum(0x7ffffff0u);
    SegmentSpec synack;
    synack.conn = 1;
    synack.flags = flag::kSyn | flag::kAck;
    synack.mode = mode::kSeqRelative | mode::kAckRelative | mode::kTimestamp;
    synack.window = 65535;
    synack.options = {2, 4, 0x05, 0xb4, 4, 2, 1, 3, 3, 7};
    Deliver(BuildSegment(synack, false));
    q.peer_nxt = q.peer_nxt + 1;
    PollNow();
  }

  // conn 2: an active open left in SYN-SENT.
  ConnView& r = conns_[2];
  {
    auto s = st.Open();
    r.sock = s.ok() ? *s : kNoSocket;
    (void)st.Connect(now_, r.sock, Endpoint{kPeer2, 22});
    auto info = st.Info(r.sock);
    if (info.ok()) r.tuple = FourTuple{info.value().local, info.value().remote};
    PollNow();
    r.peer_nxt = SeqNum(0x12345678u);
  }

  auto state = [&](int i) {
    auto info = st.Info(conns_[static_cast<size_t>(i)].sock);
    return info.ok() ? info.value().state : TcpState::kClosed;
  };
  fixture_ok_ = state(0) == TcpState::kEstablished && state(1) == TcpState::kEstablished &&
                state(2) == TcpState::kSynSent;
  baseline_ = st.counters();
  sink_->frames.clear();
  recording_ = true;
}

void Harness::Track(std::span<const std::byte> frame) {
  wire::Ipv4Header ip;
  wire::Bytes payload;
  if (wire::ParseIpv4(frame, &ip, &payload) != Drop::kNone || ip.protocol != wire::kProtoTcp) return;
  wire::TcpHeader h;
  wire::Bytes data;
  if (wire::ParseTcp(payload, ip.src, ip.dst, &h, &data) != Drop::kNone) return;
  if (recording_) {
    sent_.push_back(SentSegment{ip.dst, h.src_port, h.dst_port, h.flags, h.seq, h.ack, h.window,
                                data.size()});
  }
  for (ConnView& c : conns_) {
    if (c.tuple.remote.addr != ip.dst || c.tuple.remote.port != h.dst_port ||
        c.tuple.local.port != h.src_port) {
      continue;
    }
    const uint32_t len = static_cast<uint32_t>(data.size()) + (h.has(flag::kSyn) ? 1u : 0u) +
                         (h.has(flag::kFin) ? 1u : 0u);
    if (h.has(flag::kSyn)) {
      c.stack_iss = h.seq;
      c.stack_nxt = h.seq + len;
    } else if (c.stack_nxt < h.seq + len) {
      c.stack_nxt = h.seq + len;
    }
    if (h.options.timestamp) c.stack_ts = h.options.timestamp->val;
  }
}

void Harness::Deliver(std::span<const std::byte> frame) {
  sink_->frames.clear();
  stack_->Receive(now_, frame, *sink_);
  for (const auto& f : sink_->frames) Track(f);
  sink_->frames.clear();
}

void Harness::PollNow() {
  sink_->frames.clear();
  (void)stack_->Poll(now_, *sink_);
  for (const auto& f : sink_->frames) Track(f);
  sink_->frames.clear();
}

std::vector<std::byte> Harness::BuildSegment(const SegmentSpec& s, bool for_fragments) {
  (void)for_fragments;
  ConnView& c = View(s.conn);
  wire::TcpHeader h;
  h.src_port = c.tuple.remote.port;
  h.dst_port = c.tuple.local.port;
  h.seq = (s.mode & mode::kSeqRelative) ? c.peer_nxt + s.seq : SeqNum(s.seq);
  h.ack = (s.mode & mode::kAckRelative) ? c.stack_nxt + s.ack : SeqNum(s.ack);
  h.flags = s.flags;
  h.window = s.window;
  h.urgent = (s.mode & mode::kUrgentMax) ? 0xffff : 0;

  // Options: an optional valid timestamp, then the given bytes, padded with EOL.
  std::vector<uint8_t> opts;
  if (s.mode & mode::kTimestamp) {
    c.peer_ts += 1 + static_cast<uint32_t>(now_.nanos() / 1'000'000 % 7);
    const uint32_t val = c.peer_ts, ecr = c.stack_ts;
    opts = {1, 1, 8, 10,
            static_cast<uint8_t>(val >> 24), static_cast<uint8_t>(val >> 16),
            static_cast<uint8_t>(val >> 8), static_cast<uint8_t>(val),
            static_cast<uint8_t>(ecr >> 24), static_cast<uint8_t>(ecr >> 16),
            static_cast<uint8_t>(ecr >> 8), static_cast<uint8_t>(ecr)};
  }
  for (uint8_t o : s.options) opts.push_back(o);
  if (opts.size() > wire::kTcpMaxOptionsLen) opts.resize(wire::kTcpMaxOptionsLen);
  while (opts.size() % 4 != 0) opts.push_back(0);

  const size_t thl = wire::kTcpMinHeaderLen + opts.size();
  const size_t total = wire::kIpv4MinHeaderLen + thl + s.payload_len;
  std::vector<std::byte> f(total);
  wire::Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(total);
  ip.ttl = 64;
  ip.protocol = wire::kProtoTcp;
  ip.src = c.tuple.remote.addr;
  ip.dst = c.tuple.local.addr;
  wire::EmitIpv4(f, ip);
  std::span<std::byte> seg = std::span<std::byte>(f).subspan(wire::kIpv4MinHeaderLen);
  wire::TcpHeader plain = h;  // options are written by hand below
  plain.options = {};
  wire::EmitTcpHeader(seg, plain);
  wire::Store8(seg, 12, static_cast<uint8_t>((thl / 4) << 4));
  wire::Store16(seg, 18, h.urgent);
  for (size_t i = 0; i < opts.size(); ++i) seg[wire::kTcpMinHeaderLen + i] = std::byte{opts[i]};
  for (size_t i = 0; i < s.payload_len; ++i) {
    seg[thl + i] = static_cast<std::byte>((h.seq.raw() + i) & 0xff);
  }
  wire::FillTcpChecksum(seg, ip.src, ip.dst);
  // The peer's next sequence number moves past what this segment carries when it is in order.
  if ((s.mode & mode::kSeqRelative) && s.seq == 0) {
    c.peer_nxt = c.peer_nxt + s.payload_len + ((s.flags & flag::kFin) ? 1u : 0u);
  }
  return f;
}

SegmentSpec Harness::ReadSegmentSpec(Reader& r) {
  SegmentSpec s;
  s.conn = r.U8();
  s.flags = r.U8();
  s.mode = r.U8();
  s.seq = r.U32();
  s.ack = r.U32();
  s.window = r.U16();
  const size_t optlen = r.U8() % (wire::kTcpMaxOptionsLen + 1);
  auto o = r.Bytes(optlen);
  s.options.assign(o.begin(), o.end());
  s.payload_len = static_cast<uint16_t>(r.U16() % 1461);
  return s;
}

void Harness::DoRawFixed(Reader& r) {
  const uint8_t bits = r.U8();
  const ConnView& c = View(r.U8());
  auto in = r.Bytes(r.U16() % 2048);
  std::vector<std::byte> f(in.size());
  for (size_t i = 0; i < in.size(); ++i) f[i] = std::byte{in[i]};
  std::span<std::byte> fs(f);
  if (f.size() >= wire::kIpv4MinHeaderLen) {
    if (bits & fix::kVersionIhl) wire::Store8(fs, 0, 0x45);
    if (bits & fix::kAddresses) {
      wire::Store32(fs, 12, c.tuple.remote.addr.value());
      wire::Store32(fs, 16, c.tuple.local.addr.value());
    }
    if (bits & fix::kTotalLen) wire::Store16(fs, 2, static_cast<uint16_t>(f.size()));
    const size_t ihl = size_t{wire::Load8(fs, 0) & 0x0fu} * 4;
    const size_t tot = std::min<size_t>(wire::Load16(fs, 2), f.size());
    if (ihl >= wire::kIpv4MinHeaderLen && ihl <= tot && wire::Load8(fs, 9) == wire::kProtoTcp &&
        tot - ihl >= wire::kTcpMinHeaderLen) {
      std::span<std::byte> seg = fs.subspan(ihl, tot - ihl);
      if (bits & fix::kPorts) {
        wire::Store16(seg, 0, c.tuple.remote.port);
        wire::Store16(seg, 2, c.tuple.local.port);
      }
      if (bits & fix::kTcpChecksum) {
        wire::FillTcpChecksum(seg, Ipv4Addr(wire::Load32(fs, 12)), Ipv4Addr(wire::Load32(fs, 16)));
      }
    }
    if ((bits & fix::kIpChecksum) && ihl >= wire::kIpv4MinHeaderLen && ihl <= f.size()) {
      wire::Store16(fs, 10, 0);
      wire::Store16(fs, 10, wire::InternetChecksum(fs.first(ihl)));
    }
  }
  Deliver(f);
}

void Harness::DoSegment(Reader& r) { Deliver(BuildSegment(ReadSegmentSpec(r), false)); }

void Harness::DoFragments(Reader& r) {
  const std::vector<std::byte> whole = BuildSegment(ReadSegmentSpec(r), true);
  const std::span<const std::byte> payload =
      std::span<const std::byte>(whole).subspan(wire::kIpv4MinHeaderLen);
  const uint8_t n = r.U8() % 9;
  const uint16_t ident = ++frag_ident_;
  for (uint8_t i = 0; i < n; ++i) {
    const uint16_t off = static_cast<uint16_t>(r.U16() & ~7u);  // the field counts 8-byte units
    const uint16_t len = static_cast<uint16_t>(r.U16() % 1500);
    const bool more = (r.U8() & 1) != 0;
    // Bytes past the end of the segment are zeros.
    std::vector<std::byte> f(wire::kIpv4MinHeaderLen + len);
    for (size_t k = 0; k < len; ++k) {
      const size_t src = size_t{off} + k;
      f[wire::kIpv4MinHeaderLen + k] = src < payload.size() ? payload[src] : std::byte{0};
    }
    wire::Ipv4Header ip;
    ip.total_len = static_cast<uint16_t>(f.size());
    ip.ident = ident;
    ip.more_fragments = more;
    ip.frag_offset = off;
    ip.ttl = 64;
    ip.protocol = wire::kProtoTcp;
    ip.src = Ipv4Addr(wire::Load32(whole, 12));
    ip.dst = Ipv4Addr(wire::Load32(whole, 16));
    wire::EmitIpv4(f, ip);
    Deliver(f);
  }
}

void Harness::DoSocket(Reader& r) {
  const auto call = static_cast<Call>(r.U8() % kCallCount);
  ConnView& c = View(r.U8());
  const uint16_t arg = r.U16();
  Stack& st = *stack_;
  switch (call) {
    case Call::kSend: {
      const size_t n = arg % 8192;
      for (size_t i = 0; i < n; ++i) scratch_[i] = static_cast<std::byte>(i);
      (void)st.Send(c.sock, std::span<const std::byte>(scratch_.data(), n), (arg & 0x8000) != 0);
      break;
    }
    case Call::kRecv:
      (void)st.Recv(c.sock, std::span<std::byte>(scratch_.data(), arg % 70000u + 1),
                    (arg & 1) != 0);
      break;
    case Call::kShutdownWrite:
      (void)st.Shutdown(now_, c.sock, false, true);
      break;
    case Call::kShutdownRead:
      (void)st.Shutdown(now_, c.sock, true, (arg & 1) != 0);
      break;
    case Call::kClose:
      st.Close(now_, c.sock);
      break;
    case Call::kAccept: {
      auto a = st.Accept(listener_);
      if (a.ok()) extra_sockets_.push_back(*a);
      break;
    }
    case Call::kConnect: {
      auto s = st.Open();
      if (!s.ok()) break;
      extra_sockets_.push_back(*s);
      (void)st.Connect(now_, *s, Endpoint{kPeer, static_cast<uint16_t>(arg | 1)});
      break;
    }
    case Call::kSetOptions: {
      SocketOptions o;
      o.no_delay = (arg & 1) != 0;
      o.cork = (arg & 2) != 0;
      o.keepalive = (arg & 4) != 0;
      o.linger = (arg & 8) != 0;
      o.quick_ack = (arg & 16) != 0;
      o.keepalive_time = Duration::Seconds(1 + (arg >> 8));
      o.user_timeout = (arg & 32) != 0 ? Duration::Seconds(arg >> 10) : Duration::Zero();
      o.max_segment = (arg & 64) != 0 ? static_cast<uint16_t>(arg >> 4) : 0;
      (void)st.SetOptions(c.sock, o);
      break;
    }
  }
  PollNow();
}

void Harness::DoIcmp(Reader& r) {
  const ConnView& c = View(r.U8());
  const uint8_t type = r.U8();
  const uint8_t code = r.U8();
  const auto delta = static_cast<int8_t>(r.U8());
  const uint16_t mtu = r.U16();
  // ICMP header (8), quoted IP header (20), 8 bytes of our TCP header.
  std::vector<std::byte> f(wire::kIpv4MinHeaderLen + 8 + 20 + 8);
  std::span<std::byte> fs(f);
  wire::Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(f.size());
  ip.protocol = wire::kProtoIcmp;
  ip.src = c.tuple.remote.addr;
  ip.dst = kUs;
  wire::EmitIpv4(fs, ip);
  std::span<std::byte> icmp = fs.subspan(wire::kIpv4MinHeaderLen);
  wire::Ipv4Header quoted;
  quoted.total_len = 1500;
  quoted.protocol = wire::kProtoTcp;
  quoted.src = kUs;
  quoted.dst = c.tuple.remote.addr;
  wire::EmitIpv4(icmp.subspan(8), quoted);
  std::span<std::byte> th = icmp.subspan(28);
  wire::Store16(th, 0, c.tuple.local.port);
  wire::Store16(th, 2, c.tuple.remote.port);
  wire::Store32(th, 4, (c.stack_nxt - 1 + static_cast<uint32_t>(static_cast<int32_t>(delta))).raw());
  wire::Store8(icmp, 0, type);
  wire::Store8(icmp, 1, code);
  wire::Store16(icmp, 2, 0);
  wire::Store16(icmp, 4, 0);
  wire::Store16(icmp, 6, mtu);
  wire::Store16(icmp, 2, wire::InternetChecksum(icmp));
  Deliver(f);
}

void Harness::Run(std::span<const uint8_t> input) {
  Reader r(input);
  for (uint32_t ops = 0; ops < kMaxOps && !r.done(); ++ops) {
    switch (static_cast<Op>(r.U8() % kOpCount)) {
      case Op::kRaw: {
        auto b = r.Bytes(r.U16() % 2048);
        std::vector<std::byte> f(b.size());
        for (size_t i = 0; i < b.size(); ++i) f[i] = std::byte{b[i]};
        Deliver(f);
        break;
      }
      case Op::kRawFixed:
        DoRawFixed(r);
        break;
      case Op::kSegment:
        DoSegment(r);
        break;
      case Op::kAdvance:
        now_ = now_ + Duration::Micros(r.U32() % 130'000'000u);
        PollNow();
        break;
      case Op::kSocket:
        DoSocket(r);
        break;
      case Op::kFragments:
        DoFragments(r);
        break;
      case Op::kIcmp:
        DoIcmp(r);
        break;
      case Op::kPoll:
        PollNow();
        break;
    }
  }
  // Let every timer run out: retransmissions give up, TIME-WAIT ends. Each round jumps to the
  // next deadline; the bound keeps a misbehaving stack from looping forever.
  for (int round = 0; round < 256; ++round) {
    const Instant next = stack_->NextDeadline();
    if (next.is_never()) break;
    if (next > now_) now_ = next;
    PollNow();
  }
}

}  // namespace shake::fuzz
