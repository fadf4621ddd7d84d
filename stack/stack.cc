#include "stack/stack.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <unordered_map>
#include <vector>

#include "stack/base/siphash.h"
#include "stack/conn_table.h"
#include "stack/timer_heap.h"
#include "stack/tcp/syn_cookie.h"
#include "stack/tcp/tcb.h"
#include "stack/wire/arp.h"
#include "stack/wire/checksum.h"
#include "stack/wire/ethernet.h"
#include "stack/wire/icmp.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"

namespace shake {

namespace flag = wire::tcpflag;

std::string_view StateName(TcpState s) {
  constexpr std::string_view kNames[] = {
      "CLOSED",     "LISTEN",     "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
      "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING",  "LAST-ACK",     "TIME-WAIT"};
  return kNames[static_cast<size_t>(s)];
}

uint8_t LinuxStateNumber(TcpState s) {
  switch (s) {
    case TcpState::kEstablished: return 1;
    case TcpState::kSynSent: return 2;
    case TcpState::kSynReceived: return 3;
    case TcpState::kFinWait1: return 4;
    case TcpState::kFinWait2: return 5;
    case TcpState::kTimeWait: return 6;
    case TcpState::kClosed: return 7;
    case TcpState::kCloseWait: return 8;
    case TcpState::kLastAck: return 9;
    case TcpState::kListen: return 10;
    case TcpState::kClosing: return 11;
  }
  return 7;
}

namespace {

constexpr uint32_t kIndexBits = 20;
constexpr uint32_t kIndexMask = (1u << kIndexBits) - 1;
constexpr size_t kMaxPendingPerNeighbor = 4;
constexpr Duration kArpRetry = Duration::Seconds(1);

struct Neighbor {
  MacAddr mac;
  bool resolved = false;
  Instant expires;
  Instant last_request = Instant::FromNanos(std::numeric_limits<int64_t>::min() / 2);
  std::pmr::vector<std::pmr::vector<std::byte>> pending;
  explicit Neighbor(std::pmr::memory_resource* mem) : pending(mem) {}
};

// Linux's icmp_err_convert for destination-unreachable codes: errno and whether it is fatal.
struct IcmpErr {
  int error;
  bool hard;
};
IcmpErr ConvertUnreachable(uint8_t code) {
  switch (code) {
    case 0: return {ENETUNREACH, false};
    case 1: return {EHOSTUNREACH, false};
    case 2: return {ENOPROTOOPT, true};
    case 3: return {ECONNREFUSED, true};
    case 5: return {EOPNOTSUPP, false};
    case 6: case 9: case 11: return {ENETUNREACH, true};
    case 7: return {EHOSTDOWN, true};
    case 8: return {ENONET, true};
    case 10: case 12: case 13: return {EHOSTUNREACH, true};
    default: return {EHOSTUNREACH, false};
  }
}

// The SYN cookie key: derived from the stack's ISN secret (two SipHash outputs of inputs no
// other use shares), so that a host that fills isn_secret from its RNG keys the cookies too.
SipKey CookieKey(const SipKey& isn_secret) {
  SipKey k{};
  for (uint8_t half = 0; half < 2; ++half) {
    const std::byte label[3] = {std::byte{'s'}, std::byte{'c'}, std::byte{half}};
    const uint64_t v = SipHash24(isn_secret, label);
    for (size_t i = 0; i < 8; ++i) k[half * 8u + i] = static_cast<uint8_t>(v >> (8 * i));
  }
  return k;
}

// Linux's TCP_SYNCOOKIE_PERIOD and TCP_SYNCOOKIE_VALID: the cookie counter ticks once a minute,
// and ACKs are checked for cookies for two minutes after the SYN queue last overflowed.
constexpr int64_t kCookiePeriodNanos = 60'000'000'000;
constexpr Duration kCookieValid = Duration::Seconds(120);

// A FrameSink that stages one frame in memory, for frames waiting on ARP.
class BufferSink final : public FrameSink {
 public:
  explicit BufferSink(std::pmr::vector<std::byte>& buf) : buf_(buf) {}
  std::span<std::byte> Acquire(size_t max_len) override {
    buf_.resize(max_len);
    return buf_;
  }
  void Commit(size_t len) override { buf_.resize(len); }

 private:
  std::pmr::vector<std::byte>& buf_;
};

}  // namespace

struct Stack::Impl final : TcpHost {
  Impl(const StackConfig& c, std::pmr::memory_resource* m)
      : config(c),
        mem(m),
        budget(m, MemoryLow(c.tcp), MemoryPressure(c.tcp), c.tcp.memory_limit, &stats),
        memory_waiters(m),
        tcbs(m),
        generations(m),
        free_slots(m),
        conns(m, c.seed),
        listeners(m),
        bound_ports(m),
        timers(m),
        dirty(m),
        zombies(m),
        neighbors(m),
        reassembler(m, c.reassembly, &stats),
        cookies(CookieKey(c.isn_secret)) {}

  ~Impl() override {
    for (Tcb* t : tcbs) {
      if (t != nullptr) Destroy(t);
    }
  }

  // The levels of TcpConfig::memory_limit, with Linux's default tcp_mem ratios where unset.
  static size_t MemoryPressure(const TcpConfig& t) {
    return t.memory_pressure != 0 ? t.memory_pressure : t.memory_limit / 3 * 2;
  }
  static size_t MemoryLow(const TcpConfig& t) {
    return t.memory_low != 0 ? t.memory_low : t.memory_limit / 2;
  }

  StackConfig config;
  std::pmr::memory_resource* mem;
  Counters stats;
  // What the control blocks take for data is charged here (they allocate through it).
  MemoryBudget budget;
  // Slots of sockets whose sends the memory limit cut short, woken when it is relieved.
  std::pmr::vector<uint32_t> memory_waiters;
  StackObserver* observer = nullptr;
  bool tracing = true;  // TraceEvents go to the observer (SetTracing)
  bool Tracing() const { return observer != nullptr && tracing; }

  std::pmr::vector<Tcb*> tcbs;  // slot -> control block
  std::pmr::vector<uint32_t> generations;
  std::pmr::vector<uint32_t> free_slots;
  ConnTable conns;  // 4-tuple -> slot
  std::pmr::unordered_map<uint16_t, uint32_t> listeners;    // port -> slot
  std::pmr::unordered_map<uint16_t, uint32_t> bound_ports;  // port -> explicit binds
  TimerHeap timers;  // one entry per connection with a deadline
  std::pmr::vector<uint32_t> dirty;
  std::pmr::vector<uint32_t> zombies;
  std::pmr::unordered_map<uint32_t, Neighbor> neighbors;
  Reassembler reassembler;
  SynCookies cookies;
  uint16_t ip_ident = 0;
  Instant now_;  // the time of the call in progress, for TimestampClock users

  // ---- TcpHost ----
  const TcpConfig& tcp_config() const override { return config.tcp; }
  Counters& counters() override { return stats; }
  const MemoryBudget& memory() const override { return budget; }
  uint32_t TimestampClock(Instant now) const override {
    return static_cast<uint32_t>(now.nanos() / 1000000);
  }
  bool Transmit(Instant now, Tcb& tcb, const wire::TcpHeader& h, size_t payload_offset,
                size_t payload_len, bool retransmit, FrameSink& out) override;
  void StateChanged(Instant now, Tcb& tcb, TcpState from) override;
  void ReadinessChanged(Tcb& tcb) override;
  bool CanEstablish(Tcb& tcb) override;

  // ---- slots and ids ----
  SocketId IdOf(const Tcb& t) const { return (t.generation << kIndexBits) | (t.index + 1); }
  Tcb* Lookup(SocketId id) const {
    const uint32_t slot = (id & kIndexMask);
    if (slot == 0 || slot > tcbs.size()) return nullptr;
    Tcb* t = tcbs[slot - 1];
    if (t == nullptr || t->generation != (id >> kIndexBits) || !t->has_socket) return nullptr;
    return t;
  }
  Tcb* Create() {
    uint32_t slot;
    if (!free_slots.empty()) {
      slot = free_slots.back();
      free_slots.pop_back();
    } else {
      if (tcbs.size() >= kIndexMask) return nullptr;
      slot = static_cast<uint32_t>(tcbs.size());
      tcbs.push_back(nullptr);
      generations.push_back(0);
    }
    void* p = mem->allocate(sizeof(Tcb), alignof(Tcb));
    Tcb* t = new (p) Tcb(*this, &budget);
    t->index = slot;
    t->generation = generations[slot] & ((1u << (32 - kIndexBits)) - 1);
    t->local_mss = static_cast<uint16_t>(config.mtu - 40);
    tcbs[slot] = t;
    return t;
  }
  void Destroy(Tcb* t) {
    t->~Tcb();
    mem->deallocate(t, sizeof(Tcb), alignof(Tcb));
  }
  void Free(Tcb* t) {
    if (t->in_table) {
      conns.Erase(t->tuple);
      t->in_table = false;
    }
    if (t->explicitly_bound) Unbind(t->tuple.local.port);
    if (t->state() == TcpState::kListen) {
      auto it = listeners.find(t->tuple.local.port);
      if (it != listeners.end() && it->second == t->index) listeners.erase(it);
    }
    const uint32_t slot = t->index;
    timers.Remove(slot);
    tcbs[slot] = nullptr;
    generations[slot]++;
    free_slots.push_back(slot);
    Destroy(t);
  }
  void Unbind(uint16_t port) {
    auto it = bound_ports.find(port);
    if (it != bound_ports.end() && --it->second == 0) bound_ports.erase(it);
  }
  // An orphan that reached CLOSED is freed once the current call is done with it.
  void MaybeReap(Tcb& t) {
    if (t.state() == TcpState::kClosed && t.orphan() && !t.in_accept_queue && !t.reaping) {
      t.reaping = true;
      zombies.push_back(t.index);
    }
  }
  void ReapZombies() {
    for (uint32_t slot : zombies) {
      Tcb* t = tcbs[slot];
      if (t != nullptr && t->state() == TcpState::kClosed && t->orphan() && !t->in_accept_queue)
        Free(t);
    }
    zombies.clear();
  }

  void Reschedule(Tcb& t) {
    const Instant when = t.NextDeadline();
    if (when == t.scheduled) return;
    t.scheduled = when;
    if (when.is_never()) {
      timers.Remove(t.index);
    } else {
      timers.Set(t.index, when);
    }
  }
  // A send the memory limit cut short: the socket hears when memory is freed.
  void NoteMemoryWaiter(Tcb& t) {
    if (t.memory_waiter) return;
    t.memory_waiter = true;
    memory_waiters.push_back(t.index);
    budget.Hold();
  }
  // Once the account falls below the limit, the writers it held back may write again (Linux
  // wakes them from sk_stream_write_space as memory is freed).
  void WakeMemoryWaiters() {
    if (!budget.TakeRelief() || memory_waiters.empty()) return;
    for (uint32_t slot : memory_waiters) {
      Tcb* t = slot < tcbs.size() ? tcbs[slot] : nullptr;
      if (t == nullptr || !t->memory_waiter) continue;
      t->memory_waiter = false;
      ReadinessChanged(*t);
    }
    memory_waiters.clear();
  }
  void MarkDirty(Tcb& t) {
    if (t.dirty) return;
    t.dirty = true;
    dirty.push_back(t.index);
  }

  // ---- helpers ----
  SeqNum Isn(Instant now, const FourTuple& tuple) const {
    // RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us clock.
    std::byte buf[12];
    wire::Store32(buf, 0, tuple.local.addr.value());
    wire::Store32(buf, 4, tuple.remote.addr.value());
    wire::Store16(buf, 8, tuple.local.port);
    wire::Store16(buf, 10, tuple.remote.port);
    const uint64_t f = SipHash24(config.isn_secret, buf);
    return SeqNum(static_cast<uint32_t>(f) + static_cast<uint32_t>(now.nanos() / 4000));
  }
  uint32_t TsOffset(const FourTuple& tuple) const {
    std::byte buf[13];
    wire::Store32(buf, 0, tuple.remote.addr.value());
    wire::Store32(buf, 4, tuple.local.addr.value());
    wire::Store16(buf, 8, tuple.remote.port);
    wire::Store16(buf, 10, tuple.local.port);
    buf[12] = std::byte{0x75};  // a different input domain than the ISN's
    return static_cast<uint32_t>(SipHash24(config.isn_secret, buf));
  }
  bool Routable(Ipv4Addr dst) const {
    return dst.InSubnet(config.addr, config.prefix_len) || config.gateway.has_value();
  }
  void Trace(const TraceEvent& e) {
    if (Tracing()) observer->OnTrace(e);
  }
  void TraceSegment(TraceEvent::Kind kind, Instant now, const FourTuple& tuple,
                    const wire::TcpHeader& h, size_t len, bool retransmit = false,
                    bool challenge_ack = false) {
    if (!Tracing()) return;
    TraceEvent e;
    e.kind = kind;
    e.time = now;
    e.tuple = tuple;
    e.flags = h.flags;
    e.seq = h.seq;
    e.ack = h.ack;
    e.len = static_cast<uint32_t>(len);
    e.window = h.window;
    e.options = h.options;  // parsed (inbound) or built (outbound) anyway: a copy, when tracing
    e.retransmit = retransmit;
    e.challenge_ack = challenge_ack;
    observer->OnTrace(e);
  }

  // ---- IP output ----
  // Sends an IPv4 packet whose payload `fill` writes (it returns the payload length).
  template <typename Fill>
  bool SendIp(Instant now, Ipv4Addr dst, uint8_t protocol, size_t max_payload, Fill&& fill,
              FrameSink& out, uint8_t tos = 0, bool dont_fragment = true);
  bool WriteIpFrame(std::span<std::byte> frame_ip, Ipv4Addr dst, uint8_t protocol,
                    size_t payload_len, uint8_t tos = 0, bool dont_fragment = true);

  void SendArp(uint16_t op, MacAddr target_mac, Ipv4Addr target_ip, FrameSink& out,
               MacAddr eth_dst);

  // ---- input ----
  void HandleIp(Instant now, wire::Bytes packet, FrameSink& out, bool trusted);
  void HandleArp(Instant now, wire::Bytes payload, FrameSink& out);
  void HandleIcmp(Instant now, const wire::Ipv4Header& ip, wire::Bytes payload, FrameSink& out);
  void HandleTcp(Instant now, const wire::Ipv4Header& ip, wire::Bytes payload, FrameSink& out,
                 bool trusted);
  void HandleListen(Instant now, Tcb& listener, const FourTuple& tuple, const wire::TcpHeader& h,
                    wire::Bytes payload, FrameSink& out, SeqNum iss_override, bool use_override,
                    uint8_t ecn);
  // A child of `listener` for `tuple` in SYN-RECEIVED, filed in the tables, or nullptr.
  Tcb* NewChild(Instant now, Tcb& listener, const FourTuple& tuple);
  // RFC 4987 3.6: answers a SYN with a cookie SYN-ACK and keeps nothing.
  void SendCookieSynAck(Instant now, Tcb& listener, const FourTuple& tuple,
                        const wire::TcpHeader& h, FrameSink& out);
  // An ACK for a listener whose SYN queue overflowed lately: false when it carries no valid
  // cookie (the caller resets it); true when handled (a connection made, or the ACK dropped).
  bool CookieAck(Instant now, Tcb& listener, const FourTuple& tuple, const wire::TcpHeader& h,
                 wire::Bytes payload, FrameSink& out, uint8_t ecn);
  // RFC 3168 6.1.1: a SYN asking for ECN (ECE and CWR) that this stack accepts.
  bool EcnRequested(const wire::TcpHeader& h) const {
    return config.tcp.ecn != EcnMode::kOff && h.has(flag::kEce) && h.has(flag::kCwr);
  }
  static uint32_t CookieMinute(Instant now) {
    return static_cast<uint32_t>(now.nanos() / kCookiePeriodNanos);
  }
  void SendReset(Instant now, const FourTuple& tuple, const wire::TcpHeader& h,
                 size_t payload_len, FrameSink& out);
  bool SendTcpRaw(Instant now, const FourTuple& tuple, const wire::TcpHeader& h,
                  const ByteQueue* data, size_t offset, size_t len, FrameSink& out,
                  bool retransmit = false, bool challenge_ack = false, uint8_t tos = 0,
                  bool dont_fragment = true);

  // ---- ports ----
  bool PortTaken(uint16_t port) const {
    return listeners.contains(port) || bound_ports.contains(port);
  }
  Result<uint16_t> EphemeralPort(const Endpoint& remote) {
    const TcpConfig& c = config.tcp;
    const uint32_t range = uint32_t{c.ephemeral_high} - c.ephemeral_low + 1;
    std::byte buf[6];
    wire::Store32(buf, 0, remote.addr.value());
    wire::Store16(buf, 4, remote.port);
    const auto start = static_cast<uint32_t>(SipHash24(config.isn_secret, buf) + next_port_hint++);
    for (uint32_t i = 0; i < range; ++i) {
      const auto port = static_cast<uint16_t>(c.ephemeral_low + (start + i) % range);
      if (PortTaken(port)) continue;
      if (remote.port != 0 &&
          conns.Contains(FourTuple{Endpoint{config.addr, port}, remote}))
        continue;
      return port;
    }
    return Error(EADDRNOTAVAIL);
  }
  uint32_t next_port_hint = 0;
};

// ---- output ---------------------------------------------------------------------------------

bool Stack::Impl::WriteIpFrame(std::span<std::byte> ip_frame, Ipv4Addr dst, uint8_t protocol,
                               size_t payload_len, uint8_t tos, bool dont_fragment) {
  wire::Ipv4Header ip;
  ip.tos = tos;
  ip.total_len = static_cast<uint16_t>(wire::kIpv4MinHeaderLen + payload_len);
  ip.ident = ip_ident++;
  ip.dont_fragment = dont_fragment;
  ip.ttl = 64;
  ip.protocol = protocol;
  ip.src = config.addr;
  ip.dst = dst;
  wire::EmitIpv4(ip_frame, ip);
  stats.ip_out++;
  return true;
}

template <typename Fill>
bool Stack::Impl::SendIp(Instant now, Ipv4Addr dst, uint8_t protocol, size_t max_payload,
                         Fill&& fill, FrameSink& out, uint8_t tos, bool dont_fragment) {
  const size_t ip_len = wire::kIpv4MinHeaderLen + max_payload;
  if (config.link == LinkMode::kIp) {
    std::span<std::byte> buf = out.Acquire(ip_len);
    if (buf.size() < ip_len) {
      stats.CountDrop(Drop::kTxFull);
      return false;
    }
    const size_t n = fill(buf.subspan(wire::kIpv4MinHeaderLen));
    WriteIpFrame(buf, dst, protocol, n, tos, dont_fragment);
    out.Commit(wire::kIpv4MinHeaderLen + n);
    stats.frames_out++;
    return true;
  }
  // Ethernet: find the next hop's MAC.
  Ipv4Addr hop = dst;
  if (!dst.InSubnet(config.addr, config.prefix_len)) {
    if (!config.gateway) {
      stats.CountDrop(Drop::kNoRoute);
      return false;
    }
    hop = *config.gateway;
  }
  auto it = neighbors.find(hop.value());
  if (it == neighbors.end()) it = neighbors.emplace(hop.value(), Neighbor(mem)).first;
  Neighbor& n = it->second;
  const size_t frame_len = wire::kEthernetHeaderLen + ip_len;
  auto write = [&](std::span<std::byte> buf, MacAddr mac) {
    wire::EmitEthernet(buf, {mac, config.mac, wire::kEtherTypeIpv4});
    const size_t len = fill(buf.subspan(wire::kEthernetHeaderLen + wire::kIpv4MinHeaderLen));
    WriteIpFrame(buf.subspan(wire::kEthernetHeaderLen), dst, protocol, len, tos, dont_fragment);
    return wire::kEthernetHeaderLen + wire::kIpv4MinHeaderLen + len;
  };
  if (n.resolved) {
    if (n.expires <= now && now - n.last_request >= kArpRetry) {
      // Stale: keep using it while asking again (as Linux's STALE/PROBE states).
      n.last_request = now;
      SendArp(wire::kArpRequest, n.mac, hop, out, n.mac);
    }
    std::span<std::byte> buf = out.Acquire(frame_len);
    if (buf.size() < frame_len) {
      stats.CountDrop(Drop::kTxFull);
      return false;
    }
    out.Commit(write(buf, n.mac));
    stats.frames_out++;
    return true;
  }
  // Unresolved: hold a few frames and ask.
  if (n.pending.size() >= kMaxPendingPerNeighbor) {
    n.pending.erase(n.pending.begin());
    stats.CountDrop(Drop::kNoBuffer);
  }
  n.pending.emplace_back();
  std::pmr::vector<std::byte>& staged = n.pending.back();
  staged.resize(frame_len);
  staged.resize(write(staged, MacAddr{}));
  if (now - n.last_request >= kArpRetry) {
    n.last_request = now;
    SendArp(wire::kArpRequest, MacAddr{}, hop, out, MacAddr::Broadcast());
  }
  return true;
}

void Stack::Impl::SendArp(uint16_t op, MacAddr target_mac, Ipv4Addr target_ip, FrameSink& out,
                          MacAddr eth_dst) {
  const size_t len = wire::kEthernetHeaderLen + wire::kArpLen;
  std::span<std::byte> buf = out.Acquire(std::max<size_t>(len, 60));
  if (buf.size() < len) {
    stats.CountDrop(Drop::kTxFull);
    return;
  }
  wire::EmitEthernet(buf, {eth_dst, config.mac, wire::kEtherTypeArp});
  wire::EmitArp(buf.subspan(wire::kEthernetHeaderLen),
                {op, config.mac, config.addr, target_mac, target_ip});
  // Pad to the Ethernet minimum.
  const size_t padded = std::min<size_t>(std::max<size_t>(len, 60), buf.size());
  std::fill(buf.begin() + static_cast<std::ptrdiff_t>(len),
            buf.begin() + static_cast<std::ptrdiff_t>(padded), std::byte{0});
  out.Commit(padded);
  stats.arp_out++;
  stats.frames_out++;
}

bool Stack::Impl::SendTcpRaw(Instant now, const FourTuple& tuple, const wire::TcpHeader& h,
                             const ByteQueue* data, size_t offset, size_t len, FrameSink& out,
                             bool retransmit, bool challenge_ack, uint8_t tos,
                             bool dont_fragment) {
  const size_t hlen = wire::TcpHeaderLen(h.options);
  const bool ok = SendIp(
      now, tuple.remote.addr, wire::kProtoTcp, hlen + len,
      [&](std::span<std::byte> seg) {
        wire::EmitTcpHeader(seg, h);
        if (len != 0) data->CopyOut(offset, seg.subspan(hlen, len));
        wire::FillTcpChecksum(seg.first(hlen + len), tuple.local.addr, tuple.remote.addr);
        return hlen + len;
      },
      out, tos, dont_fragment);
  if (ok) {
    stats.tcp_segments_out++;
    TraceSegment(TraceEvent::Kind::kSegmentOut, now, tuple, h, len, retransmit, challenge_ack);
  }
  return ok;
}

bool Stack::Impl::Transmit(Instant now, Tcb& tcb, const wire::TcpHeader& h, size_t payload_offset,
                           size_t payload_len, bool retransmit, FrameSink& out) {
  return SendTcpRaw(now, tcb.tuple, h, &tcb.send_queue(), payload_offset, payload_len, out,
                    retransmit, tcb.sending_challenge_ack(), tcb.sending_tos(),
                    tcb.sending_dont_fragment());
}

void Stack::Impl::SendReset(Instant now, const FourTuple& tuple, const wire::TcpHeader& h,
                            size_t payload_len, FrameSink& out) {
  if (h.has(flag::kRst)) return;  // never answer a reset with a reset
  const wire::TcpHeader r = Tcb::ResetFor(h, payload_len);
  if (SendTcpRaw(now, tuple, r, nullptr, 0, 0, out)) stats.tcp_resets_out++;
}

// ---- state changes --------------------------------------------------------------------------

void Stack::Impl::StateChanged(Instant now, Tcb& tcb, TcpState from) {
  const TcpState to = tcb.state();
  if (Tracing()) {
    TraceEvent e;
    e.kind = TraceEvent::Kind::kStateChange;
    e.time = now;
    e.tuple = tcb.tuple;
    e.from = from;
    e.to = to;
    Trace(e);
  }
  Tcb* parent = tcb.listener != 0 ? tcbs[tcb.listener - 1] : nullptr;
  if (from == TcpState::kSynReceived && parent != nullptr) {
    if (parent->syn_queue_len > 0) parent->syn_queue_len--;
    if (to == TcpState::kEstablished || to == TcpState::kCloseWait) {
      parent->accept_queue.push_back(tcb.index);
      tcb.in_accept_queue = true;
      ReadinessChanged(*parent);
    } else {
      tcb.listener = 0;
    }
  }
  if (to == TcpState::kClosed) {
    if (tcb.in_table) {
      conns.Erase(tcb.tuple);
      tcb.in_table = false;
    }
    MaybeReap(tcb);
  }
}

bool Stack::Impl::CanEstablish(Tcb& tcb) {
  Tcb* parent = tcb.listener != 0 ? tcbs[tcb.listener - 1] : nullptr;
  if (parent == nullptr) return true;
  // Linux's sk_acceptq_is_full: full when more than `backlog` connections wait.
  return parent->accept_queue.size() <= static_cast<size_t>(parent->backlog);
}

void Stack::Impl::ReadinessChanged(Tcb& tcb) {
  if (observer != nullptr && tcb.has_socket) observer->OnReadiness(IdOf(tcb));
}

// ---- input ----------------------------------------------------------------------------------

void Stack::Impl::HandleArp(Instant now, wire::Bytes payload, FrameSink& out) {
  wire::ArpPacket p;
  const Drop d = wire::ParseArp(payload, &p);
  if (d != Drop::kNone) {
    stats.CountDrop(d);
    return;
  }
  stats.arp_in++;
  const bool for_us = p.target_ip == config.addr;
  auto it = neighbors.find(p.sender_ip.value());
  // RFC 826: update an entry we have; add one only when the packet is addressed to us.
  if (!p.sender_ip.is_unspecified() && !p.sender_mac.is_multicast() &&
      (it != neighbors.end() || for_us)) {
    if (it == neighbors.end()) it = neighbors.emplace(p.sender_ip.value(), Neighbor(mem)).first;
    Neighbor& n = it->second;
    n.mac = p.sender_mac;
    n.resolved = true;
    n.expires = now + config.arp_cache_ttl;
    for (auto& frame : n.pending) {
      std::copy(n.mac.b.begin(), n.mac.b.end(),
                reinterpret_cast<uint8_t*>(frame.data()));  // the Ethernet destination
      std::span<std::byte> buf = out.Acquire(frame.size());
      if (buf.size() < frame.size()) {
        stats.CountDrop(Drop::kTxFull);
        continue;
      }
      std::copy(frame.begin(), frame.end(), buf.begin());
      out.Commit(frame.size());
      stats.frames_out++;
    }
    n.pending.clear();
  }
  if (for_us && p.op == wire::kArpRequest) {
    SendArp(wire::kArpReply, p.sender_mac, p.sender_ip, out, p.sender_mac);
  }
}

void Stack::Impl::HandleIp(Instant now, wire::Bytes packet, FrameSink& out, bool trusted) {
  wire::Ipv4Header ip;
  wire::Bytes payload;
  Drop d = wire::ParseIpv4(packet, &ip, &payload);
  if (d != Drop::kNone) {
    stats.CountDrop(d);
    return;
  }
  stats.ip_in++;
  if (ip.dst != config.addr) {
    stats.CountDrop(Drop::kNotForUs);
    return;
  }
  if (ip.src == ip.dst) {
    stats.CountDrop(Drop::kLand);
    return;
  }
  if (ip.src.is_unspecified() || ip.src.is_broadcast() || ip.src.is_multicast() ||
      ip.src.is_loopback()) {
    stats.CountDrop(Drop::kBadIpAddress);
    return;
  }
  if (ip.is_fragment()) {
    auto whole = reassembler.Add(now, ip, payload);
    if (!whole) return;
    ip = whole->header;
    payload = whole->payload;
    trusted = false;
  }
  switch (ip.protocol) {
    case wire::kProtoTcp:
      HandleTcp(now, ip, payload, out, trusted);
      break;
    case wire::kProtoIcmp:
      HandleIcmp(now, ip, payload, out);
      break;
    default:
      stats.CountDrop(Drop::kUnknownProtocol);
      break;
  }
}

void Stack::Impl::HandleIcmp(Instant now, const wire::Ipv4Header& ip, wire::Bytes payload,
                             FrameSink& out) {
  wire::IcmpMessage m;
  const Drop d = wire::ParseIcmp(payload, &m);
  if (d != Drop::kNone) {
    stats.CountDrop(d);
    return;
  }
  stats.icmp_in++;
  if (m.type == wire::kIcmpEchoRequest) {
    wire::IcmpMessage reply = m;
    reply.type = wire::kIcmpEchoReply;
    reply.code = 0;
    if (SendIp(now, ip.src, wire::kProtoIcmp, wire::kIcmpHeaderLen + m.payload.size(),
               [&](std::span<std::byte> b) { return wire::EmitIcmp(b, reply); }, out)) {
      stats.icmp_out++;
    }
    return;
  }
  if (m.type != wire::kIcmpDestUnreachable && m.type != wire::kIcmpTimeExceeded) {
    stats.CountDrop(Drop::kIcmpIgnored);
    return;
  }
  // The quoted datagram: our IP header and at least 8 bytes of our TCP header.
  wire::Ipv4Header quoted;
  wire::Bytes rest;
  if (m.payload.size() < wire::kIpv4MinHeaderLen) {
    stats.CountDrop(Drop::kBadIcmp);
    return;
  }
  const size_t ihl = (wire::Load8(m.payload, 0) & 0x0f) * 4u;
  if ((wire::Load8(m.payload, 0) >> 4) != 4 || ihl < wire::kIpv4MinHeaderLen ||
      m.payload.size() < ihl + 8) {
    stats.CountDrop(Drop::kBadIcmp);
    return;
  }
  quoted.protocol = wire::Load8(m.payload, 9);
  quoted.src = Ipv4Addr(wire::Load32(m.payload, 12));
  quoted.dst = Ipv4Addr(wire::Load32(m.payload, 16));
  rest = m.payload.subspan(ihl);
  if (quoted.protocol != wire::kProtoTcp || quoted.src != config.addr) {
    stats.CountDrop(Drop::kIcmpIgnored);
    return;
  }
  const FourTuple tuple{Endpoint{quoted.src, wire::Load16(rest, 0)},
                        Endpoint{quoted.dst, wire::Load16(rest, 2)}};
  const SeqNum seq(wire::Load32(rest, 4));
  const uint32_t slot = conns.Find(tuple);
  if (slot == ConnTable::kAbsent) {
    stats.CountDrop(Drop::kIcmpIgnored);
    return;
  }
  Tcb& t = *tcbs[slot];
  // RFC 5927 4.1: the quoted sequence number must lie in SND.UNA..SND.NXT.
  if (seq < t.snd_una() || seq > t.snd_max()) {
    stats.CountDrop(Drop::kIcmpIgnored);
    return;
  }
  stats.icmp_errors_delivered++;
  if (t.state() == TcpState::kSynReceived && t.listener != 0) {
    // Linux tcp_req_err: a network or host unreachable or a time exceeded for the SYN-ACK of
    // a handshake in progress (quoting exactly its ISS) drops the embryonic connection, with
    // no reset; the peer's later segments then meet the listener (RFC 5927 4.1's check above,
    // RFC 1122 4.2.3.9's hard errors while opening).
    const bool abort = m.type == wire::kIcmpTimeExceeded ||
                       (m.type == wire::kIcmpDestUnreachable && (m.code == 0 || m.code == 1));
    if (abort && seq == t.iss()) {
      t.Abort(now, nullptr, 0);
      Reschedule(t);
      MaybeReap(t);
    }
    return;
  }
  if (m.type == wire::kIcmpDestUnreachable && m.code == wire::kIcmpFragNeeded) {
    t.IcmpError(now, EMSGSIZE, false, static_cast<uint16_t>(m.rest & 0xffff));
    MarkDirty(t);
  } else if (m.type == wire::kIcmpDestUnreachable) {
    const IcmpErr e = ConvertUnreachable(m.code);
    t.IcmpError(now, e.error, e.hard, 0);
  } else {
    t.IcmpError(now, EHOSTUNREACH, false, 0);
  }
  Reschedule(t);
  MaybeReap(t);
}

void Stack::Impl::HandleTcp(Instant now, const wire::Ipv4Header& ip, wire::Bytes payload,
                            FrameSink& out, bool trusted) {
  wire::TcpHeader h;
  wire::Bytes data;
  const Drop d = wire::ParseTcp(payload, ip.src, ip.dst, &h, &data, !trusted);
  if (d != Drop::kNone) {
    stats.CountDrop(d);
    return;
  }
  stats.tcp_segments_in++;
  if (h.src_port == 0 || h.dst_port == 0 ||
      (h.has(flag::kSyn) && (h.has(flag::kRst) || h.has(flag::kFin)))) {
    stats.CountDrop(Drop::kBadTcpFlags);
    return;
  }
  const FourTuple tuple{Endpoint{ip.dst, h.dst_port}, Endpoint{ip.src, h.src_port}};
  TraceSegment(TraceEvent::Kind::kSegmentIn, now, tuple, h, data.size());
  const uint32_t slot = conns.Find(tuple);
  if (slot != ConnTable::kAbsent) {
    Tcb& t = *tcbs[slot];
    if (t.state() == TcpState::kTimeWait && h.has(flag::kSyn) && !h.has(flag::kAck) &&
        t.TimeWaitAcceptsSyn(h)) {
      auto l = listeners.find(h.dst_port);
      if (l != listeners.end()) {
        const SeqNum iss = t.time_wait_next_iss();
        stats.tcp_time_wait_reused++;
        conns.Erase(tuple);
        t.in_table = false;
        Free(&t);
        HandleListen(now, *tcbs[l->second], tuple, h, data, out, iss, true,
                     static_cast<uint8_t>(ip.tos & 3));
        return;
      }
    }
    t.SegmentArrives(now, h, data, out, static_cast<uint8_t>(ip.tos & 3));
    Reschedule(t);
    MaybeReap(t);
    return;
  }
  auto l = listeners.find(h.dst_port);
  if (l != listeners.end()) {
    HandleListen(now, *tcbs[l->second], tuple, h, data, out, SeqNum(), false,
                 static_cast<uint8_t>(ip.tos & 3));
    return;
  }
  stats.CountDrop(Drop::kNoConnection);
  SendReset(now, tuple, h, data.size(), out);
}

void Stack::Impl::HandleListen(Instant now, Tcb& listener, const FourTuple& tuple,
                               const wire::TcpHeader& h, wire::Bytes payload, FrameSink& out,
                               SeqNum iss_override, bool use_override, uint8_t ecn) {
  // RFC 9293 3.10.7.2.
  if (h.has(flag::kRst)) return;
  if (h.has(flag::kAck)) {
    // Linux cookie_v4_check: an ACK (not a SYN-ACK) may complete a handshake answered with a
    // cookie, checked only while cookies have been sent lately; an invalid one is reset.
    if (!h.has(flag::kSyn) && config.tcp.syn_cookies && listener.syn_queue_overflowed &&
        now - listener.last_syn_queue_overflow <= kCookieValid &&
        CookieAck(now, listener, tuple, h, payload, out, ecn)) {
      return;
    }
    stats.CountDrop(Drop::kNoConnection);
    SendReset(now, tuple, h, payload.size(), out);
    return;
  }
  if (!h.has(flag::kSyn)) {
    stats.CountDrop(Drop::kNoConnection);
    return;
  }
  // Linux tcp_conn_request, in its order. The SYN queue is full when more than `backlog`
  // handshakes are in progress (inet_csk_reqsk_queue_is_full); then a cookie answers the SYN
  // (RFC 4987 3.6), or without cookies it is dropped. A SYN that takes over a TIME-WAIT
  // connection is exempt. Then a full accept queue drops the SYN in any case.
  bool want_cookie = false;
  if (!use_override && (listener.syn_queue_len > static_cast<uint32_t>(listener.backlog) ||
                        listener.syn_queue_len >=
                            static_cast<uint32_t>(config.tcp.default_backlog_limit))) {
    if (!config.tcp.syn_cookies) {
      stats.CountDrop(Drop::kSynQueueFull);
      return;
    }
    want_cookie = true;
  }
  if (listener.accept_queue.size() > static_cast<size_t>(listener.backlog)) {
    stats.CountDrop(Drop::kAcceptQueueFull);
    return;
  }
  if (want_cookie) {
    SendCookieSynAck(now, listener, tuple, h, out);
    return;
  }
  Tcb* child = NewChild(now, listener, tuple);
  if (child == nullptr) return;
  PeerSyn syn{h.seq, h.window, h.options, EcnRequested(h)};
  const SeqNum iss = use_override ? iss_override : Isn(now, tuple);
  child->OpenPassive(now, iss, TsOffset(tuple), syn);
  child->Output(now, out);
  Reschedule(*child);
}

Tcb* Stack::Impl::NewChild(Instant now, Tcb& listener, const FourTuple& tuple) {
  Tcb* child = Create();
  if (child == nullptr) {
    stats.CountDrop(Drop::kNoBuffer);
    return nullptr;
  }
  child->tuple = tuple;
  child->listener = listener.index + 1;
  child->options = listener.options;
  child->options.reuse_addr = false;
  conns.Insert(tuple, child->index);
  child->in_table = true;
  listener.syn_queue_len++;
  stats.tcp_passive_opens++;
  if (Tracing()) {
    TraceEvent e;
    e.kind = TraceEvent::Kind::kStateChange;
    e.time = now;
    e.tuple = tuple;
    e.from = TcpState::kListen;
    e.to = TcpState::kSynReceived;
    Trace(e);
  }
  return child;
}

void Stack::Impl::SendCookieSynAck(Instant now, Tcb& listener, const FourTuple& tuple,
                                   const wire::TcpHeader& h, FrameSink& out) {
  // As Linux's tcp_conn_request with want_cookie: the SYN-ACK a normal child would send, but
  // its ISS is the cookie, and the options beyond MSS survive only in the timestamp's low bits,
  // so without timestamps the SYN-ACK offers neither window scaling nor SACK.
  const TcpConfig& c = config.tcp;
  const wire::TcpOptions& offered = h.options;
  const SocketOptions& lo = listener.options;
  uint16_t peer_mss = offered.mss.value_or(536);  // RFC 9293 3.7.1's default
  if (lo.max_segment != 0) peer_mss = std::min(peer_mss, lo.max_segment);
  const bool ts = c.timestamps && offered.timestamp.has_value();
  SynCookies::Options o;
  if (ts) {
    if (c.window_scaling && offered.window_scale) {
      o.window_scale = std::min<uint8_t>(*offered.window_scale, 14);  // RFC 7323 2.3
    }
    o.sack_permitted = c.sack && offered.sack_permitted;
    o.ecn = EcnRequested(h);  // only with timestamps: nowhere else to keep it (Linux)
  }
  const size_t capacity = lo.recv_buffer != 0 ? lo.recv_buffer : c.recv_buffer;
  wire::TcpHeader r;
  r.src_port = tuple.local.port;
  r.dst_port = tuple.remote.port;
  r.seq = cookies.Make(tuple, h.seq, CookieMinute(now), &peer_mss);
  r.ack = h.seq + 1;
  r.flags = flag::kSyn | flag::kAck | (o.ecn ? flag::kEce : 0);
  r.window = static_cast<uint16_t>(std::min<size_t>(capacity, 65535));  // RFC 7323 2.2
  r.options.mss = lo.max_segment != 0 ? std::min(listener.local_mss, lo.max_segment)
                                      : listener.local_mss;
  if (o.window_scale) r.options.window_scale = Tcb::WindowScaleFor(capacity);
  r.options.sack_permitted = o.sack_permitted;
  if (ts) {
    r.options.timestamp = wire::TcpTimestamp{
        SynCookies::Timestamp(TimestampClock(now), o) + TsOffset(tuple), offered.timestamp->val};
  }
  listener.syn_queue_overflowed = true;
  listener.last_syn_queue_overflow = now;
  // The listener's IP_TOS and IP_MTU_DISCOVER, as its SYN-ACKs carry them (a SYN-ACK is never
  // ECN-capable, RFC 3168 6.1.1).
  if (SendTcpRaw(now, tuple, r, nullptr, 0, 0, out, false, false,
                 static_cast<uint8_t>(lo.tos & 0xfc), SendsDontFragment(lo.pmtu_discovery))) {
    stats.tcp_syncookies_sent++;
  }
}

bool Stack::Impl::CookieAck(Instant now, Tcb& listener, const FourTuple& tuple,
                            const wire::TcpHeader& h, wire::Bytes payload, FrameSink& out,
                            uint8_t ecn) {
  const std::optional<uint16_t> mss = cookies.Check(tuple, h.seq, h.ack, CookieMinute(now));
  if (!mss) {
    stats.tcp_syncookies_failed++;
    return false;
  }
  stats.tcp_syncookies_recv++;
  // What the SYN offered, as the cookie and the final ACK carry it (Linux cookie_tcp_check and
  // cookie_timestamp_decode): the MSS from the table; with a timestamp, the options from the
  // low bits of its echo. An option this stack has turned off means a forgery: refused.
  const TcpConfig& c = config.tcp;
  PeerSyn syn;
  syn.irs = h.seq - 1;
  syn.window = h.window;
  syn.options.mss = *mss;
  if (h.options.timestamp) {
    if (!c.timestamps) return false;
    uint32_t echoed = h.options.timestamp->ecr;
    if (echoed != 0) echoed -= TsOffset(tuple);
    const SynCookies::Options o = SynCookies::DecodeOptions(echoed);
    if ((o.sack_permitted && !c.sack) || (o.window_scale && !c.window_scaling)) return false;
    syn.options.window_scale = o.window_scale;
    syn.options.sack_permitted = o.sack_permitted;
    syn.ecn = o.ecn && c.ecn != EcnMode::kOff;
    syn.options.timestamp = wire::TcpTimestamp{h.options.timestamp->val, 0};
  }
  // Linux tcp_v4_syn_recv_sock: with the accept queue full the ACK is dropped, not reset.
  if (listener.accept_queue.size() > static_cast<size_t>(listener.backlog)) {
    stats.CountDrop(Drop::kAcceptQueueFull);
    return true;
  }
  Tcb* child = NewChild(now, listener, tuple);
  if (child == nullptr) return true;
  child->OpenFromCookie(now, h.ack - 1, TsOffset(tuple), syn);
  child->SegmentArrives(now, h, payload, out, ecn);
  if (child->state() == TcpState::kSynReceived) {
    // Not established by its own ACK (which cannot happen for a valid cookie): a child with
    // no SYN-ACK to resend would wait forever, so it goes.
    child->Abort(now, nullptr, 0);
  }
  Reschedule(*child);
  MaybeReap(*child);
  return true;
}

// ---- Stack ----------------------------------------------------------------------------------

Stack::Stack(const StackConfig& config, std::pmr::memory_resource* memory) {
  void* p = memory->allocate(sizeof(Impl), alignof(Impl));
  impl_ = new (p) Impl(config, memory);
}

Stack::~Stack() {
  std::pmr::memory_resource* mem = impl_->mem;
  impl_->~Impl();
  mem->deallocate(impl_, sizeof(Impl), alignof(Impl));
}

const StackConfig& Stack::config() const { return impl_->config; }

void Stack::SetGateway(std::optional<Ipv4Addr> gateway) { impl_->config.gateway = gateway; }

void Stack::Receive(Instant now, std::span<const std::byte> frame, FrameSink& out,
                    bool checksum_trusted) {
  Impl& s = *impl_;
  s.stats.frames_in++;
  if (s.config.link == LinkMode::kEthernet) {
    wire::EthernetHeader eth;
    wire::Bytes payload;
    const Drop d = wire::ParseEthernet(frame, &eth, &payload);
    if (d != Drop::kNone) {
      s.stats.CountDrop(d);
      return;
    }
    if (eth.dst != s.config.mac && !eth.dst.is_broadcast()) {
      s.stats.CountDrop(Drop::kNotForUs);
      return;
    }
    if (eth.ethertype == wire::kEtherTypeArp) {
      s.HandleArp(now, payload, out);
    } else if (eth.ethertype == wire::kEtherTypeIpv4) {
      s.HandleIp(now, payload, out, checksum_trusted);
    } else {
      s.stats.CountDrop(Drop::kUnknownEtherType);
    }
  } else {
    s.HandleIp(now, frame, out, checksum_trusted);
  }
  s.ReapZombies();
  s.WakeMemoryWaiters();
}

Instant Stack::Poll(Instant now, FrameSink& out) {
  Impl& s = *impl_;
  // Output queued by socket calls.
  for (size_t i = 0; i < s.dirty.size(); ++i) {
    Tcb* t = s.tcbs[s.dirty[i]];
    if (t == nullptr || t->reaping) continue;
    t->dirty = false;
    t->Output(now, out);
    s.Reschedule(*t);
    s.MaybeReap(*t);
  }
  s.dirty.clear();
  // Due timers.
  while (!s.timers.empty() && s.timers.top_when() <= now) {
    Tcb* t = s.tcbs[s.timers.top_slot()];
    s.timers.Pop();
    t->scheduled = Instant::Never();
    t->OnTimer(now, out);
    s.Reschedule(*t);
    s.MaybeReap(*t);
  }
  s.reassembler.Expire(now);
  s.ReapZombies();
  s.WakeMemoryWaiters();
  return NextDeadline();
}

Instant Stack::NextDeadline() const {
  const Impl& s = *impl_;
  Instant t = s.timers.empty() ? Instant::Never() : s.timers.top_when();
  if (!s.dirty.empty()) t = Instant::FromNanos(std::numeric_limits<int64_t>::min() / 2);
  return Min(t, s.reassembler.NextDeadline());
}

Result<SocketId> Stack::Open() {
  Tcb* t = impl_->Create();
  if (t == nullptr) return Error(ENOBUFS);
  t->has_socket = true;
  return impl_->IdOf(*t);
}

Result0 Stack::Bind(SocketId id, Endpoint local) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  if (t->state() != TcpState::kClosed || t->tuple.local.port != 0 || t->ever_connected())
    return Error(EINVAL);
  if (!local.addr.is_unspecified() && local.addr != s.config.addr) return Error(EADDRNOTAVAIL);
  uint16_t port = local.port;
  if (port == 0) {
    auto p = s.EphemeralPort(Endpoint{});
    if (!p.ok()) return Error(p.error());
    port = *p;
  } else if (s.listeners.contains(port) ||
             (s.bound_ports.contains(port) && !t->options.reuse_addr)) {
    return Error(EADDRINUSE);
  }
  t->tuple.local = Endpoint{s.config.addr, port};
  t->explicitly_bound = true;
  s.bound_ports[port]++;
  return Ok();
}

Result0 Stack::Listen(SocketId id, int backlog) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  const int limit = s.config.tcp.default_backlog_limit;
  backlog = std::clamp(backlog, 0, limit);
  if (t->state() == TcpState::kListen) {
    t->backlog = backlog;
    return Ok();
  }
  if (t->state() != TcpState::kClosed || t->ever_connected()) return Error(EINVAL);
  if (t->tuple.local.port == 0) {
    if (auto r = Bind(id, Endpoint{}); !r.ok()) return r;
  }
  const uint16_t port = t->tuple.local.port;
  if (s.listeners.contains(port)) return Error(EADDRINUSE);
  t->MakeListener(backlog);
  s.listeners[port] = t->index;
  return Ok();
}

Result<SocketId> Stack::Accept(SocketId id) {
  Impl& s = *impl_;
  Tcb* l = s.Lookup(id);
  if (l == nullptr) return Error(EBADF);
  if (l->state() != TcpState::kListen) return Error(EINVAL);
  if (l->accept_queue.empty()) return Error(EAGAIN);
  const uint32_t slot = l->accept_queue.front();
  l->accept_queue.pop_front();
  Tcb* c = s.tcbs[slot];
  c->in_accept_queue = false;
  c->listener = 0;
  c->has_socket = true;
  s.ReadinessChanged(*l);
  return s.IdOf(*c);
}

Result0 Stack::Connect(Instant now, SocketId id, Endpoint remote) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  switch (t->state()) {
    case TcpState::kClosed:
      break;
    case TcpState::kSynSent:
    case TcpState::kSynReceived:
      return Error(EALREADY);
    default:
      return Error(EISCONN);
  }
  if (t->ever_connected() || t->done()) {
    // A socket whose connection ended cannot connect again (Linux allows it only after
    // AF_UNSPEC disconnect, which we do not offer).
    return Error(t->done() ? EISCONN : EISCONN);
  }
  if (remote.port == 0 || remote.addr.is_unspecified() || remote.addr.is_multicast() ||
      remote.addr.is_broadcast())
    return Error(remote.port == 0 ? ECONNREFUSED : ENETUNREACH);
  if (!s.Routable(remote.addr)) return Error(ENETUNREACH);
  if (t->tuple.local.port == 0) {
    auto p = s.EphemeralPort(remote);
    if (!p.ok()) return Error(p.error());
    t->tuple.local = Endpoint{s.config.addr, *p};
  }
  t->tuple.remote = remote;
  if (s.conns.Contains(t->tuple)) {
    t->tuple.remote = Endpoint{};
    return Error(EADDRNOTAVAIL);
  }
  s.conns.Insert(t->tuple, t->index);
  t->in_table = true;
  t->OpenActive(now, s.Isn(now, t->tuple), s.TsOffset(t->tuple));
  s.MarkDirty(*t);
  return Error(EINPROGRESS);
}

Result<size_t> Stack::Send(SocketId id, std::span<const std::byte> data, bool more) {
  return Send(id, data, SendFlags{more, false});
}

Result<size_t> Stack::Send(SocketId id, std::span<const std::byte> data, SendFlags flags) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  if (t->pending_error() != 0) return Error(t->TakeError());
  const TcpState st = t->state();
  if (t->write_shut() || t->done()) return Error(EPIPE);
  if (st == TcpState::kSynSent || st == TcpState::kSynReceived) return Error(EAGAIN);
  if (st != TcpState::kEstablished && st != TcpState::kCloseWait) return Error(EPIPE);
  if (data.empty()) return size_t{0};
  const size_t n = t->Write(data, flags.more, flags.eor);
  if (t->TakeMemoryLimited()) s.NoteMemoryWaiter(*t);
  if (n == 0) {
    if (t->chrono_due()) s.MarkDirty(*t);  // the next output notes the sndbuf-limited time
    return Error(EAGAIN);
  }
  // Linux numbers a MSG_ZEROCOPY send only when it has bytes (tcp_sendmsg_locked).
  if (flags.zerocopy && t->options.zerocopy) {
    t->ZerocopySent();
    s.ReadinessChanged(*t);
  }
  s.MarkDirty(*t);
  return n;
}

Result<size_t> Stack::Recv(SocketId id, std::span<std::byte> buf, bool peek) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  if (t->state() == TcpState::kListen) return Error(ENOTCONN);
  if (t->readable() != 0) {
    if (buf.empty()) return size_t{0};
    const size_t n = t->Read(buf, peek);
    if (!peek) {
      s.MarkDirty(*t);  // a window update may be due
      s.WakeMemoryWaiters();
    }
    return n;
  }
  if (t->pending_error() != 0) return Error(t->TakeError());
  if (t->fin_received() || t->read_shut() || t->done()) return size_t{0};
  if (t->state() == TcpState::kClosed && !t->ever_connected()) return Error(ENOTCONN);
  return Error(EAGAIN);
}

Result0 Stack::Shutdown(Instant now, SocketId id, bool read, bool write) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return Error(EBADF);
  const TcpState st = t->state();
  if (st == TcpState::kClosed && !t->ever_connected()) return Error(ENOTCONN);
  if (st == TcpState::kListen) {
    if (read) {
      // Linux: SHUT_RD on a listener stops it (inet_shutdown -> disconnect).
      Close(now, id);
      return Error(0);
    }
    return Error(ENOTCONN);
  }
  if (read) t->ShutdownRead();
  if (write) {
    if (st == TcpState::kSynSent) {
      // Linux: the half-open attempt is dropped quietly.
      t->Abort(now, nullptr, 0);
    } else {
      t->ShutdownWrite(now);
    }
  }
  s.MarkDirty(*t);
  s.ReadinessChanged(*t);
  return Ok();
}

void Stack::Close(Instant now, SocketId id) {
  Impl& s = *impl_;
  Tcb* t = s.Lookup(id);
  if (t == nullptr) return;
  t->has_socket = false;
  switch (t->state()) {
    case TcpState::kListen: {
      // Reset every connection still waiting for accept() or still in its handshake.
      const uint32_t me = t->index + 1;
      for (Tcb* c : s.tcbs) {
        if (c == nullptr || c->listener != me) continue;
        c->in_accept_queue = false;
        c->listener = 0;
        c->has_socket = false;
        c->RequestAbort();
        s.MarkDirty(*c);
      }
      t->accept_queue.clear();
      s.Free(t);
      break;
    }
    case TcpState::kClosed:
    case TcpState::kSynSent:
      if (t->state() == TcpState::kSynSent) t->Abort(now, nullptr, 0);
      s.Free(t);
      break;
    default: {
      const bool unread = t->readable() != 0;
      const bool abort = unread || (t->options.linger && t->options.linger_time == Duration::Zero());
      t->ShutdownRead();
      if (abort && t->state() != TcpState::kTimeWait) {
        // RFC 9293 3.10.4 and RFC 2525 2.17: closing with unread data resets the connection.
        t->RequestAbort();
      } else {
        t->ShutdownWrite(now);
        t->Orphaned(now);
        if (t->OrphanOutOfMemory()) {
          // Linux tcp_close: closed while the stack's memory is at its limit, with more than
          // a minimum still to send, the connection is reset (TCPAbortOnMemory).
          s.stats.tcp_abort_on_memory++;
          t->RequestAbort();
        }
      }
      s.MarkDirty(*t);
      s.Reschedule(*t);
      break;
    }
  }
}

Result0 Stack::SetOptions(SocketId id, const SocketOptions& options) {
  Tcb* t = impl_->Lookup(id);
  if (t == nullptr) return Error(EBADF);
  const bool uncork = t->options.cork && !options.cork;
  t->options = options;
  t->OptionsChanged();
  // Linux: setting TCP_NODELAY (even again), or clearing TCP_CORK with it set, pushes what
  // Nagle, cork or MSG_MORE hold (TCP_NAGLE_PUSH); clearing TCP_CORK pushes in any case.
  if (options.no_delay) t->RequestPush();
  if (uncork || options.no_delay || options.keepalive) impl_->MarkDirty(*t);
  impl_->Reschedule(*t);
  return Ok();
}

Result<SocketOptions> Stack::GetOptions(SocketId id) const {
  const Tcb* t = impl_->Lookup(id);
  if (t == nullptr) return Error(EBADF);
  return t->options;
}

Result<SocketOptions> Stack::EffectiveOptions(SocketId id) const {
  const Tcb* t = impl_->Lookup(id);
  if (t == nullptr) return Error(EBADF);
  const TcpConfig& c = impl_->config.tcp;
  SocketOptions o = t->options;
  if (o.keepalive_time == Duration::Zero()) o.keepalive_time = c.keepalive_time;
  if (o.keepalive_interval == Duration::Zero()) o.keepalive_interval = c.keepalive_interval;
  if (o.keepalive_probes == 0) o.keepalive_probes = c.keepalive_probes;
  if (o.syn_count == 0) o.syn_count = c.syn_retries;
  if (o.send_buffer == 0) o.send_buffer = c.send_buffer;
  if (o.recv_buffer == 0) o.recv_buffer = c.recv_buffer;
  return o;
}

Result<SocketInfo> Stack::Info(SocketId id) const {
  const Tcb* t = impl_->Lookup(id);
  if (t == nullptr) return Error(EBADF);
  SocketInfo info;
  t->FillInfo(info);
  return info;
}

int Stack::TakeError(SocketId id) {
  Tcb* t = impl_->Lookup(id);
  return t == nullptr ? EBADF : t->TakeError();
}

std::optional<ZerocopyDone> Stack::TakeZerocopyDone(SocketId id) {
  Tcb* t = impl_->Lookup(id);
  if (t == nullptr) return std::nullopt;
  std::optional<ZerocopyDone> d = t->TakeZerocopyDone();
  if (d) impl_->ReadinessChanged(*t);
  return d;
}

uint32_t Stack::Readiness(SocketId id) const {
  const Tcb* t = impl_->Lookup(id);
  return t == nullptr ? ready::kHangup | ready::kError : t->Readiness();
}

void Stack::SetObserver(StackObserver* observer) { impl_->observer = observer; }
void Stack::SetTracing(bool on) { impl_->tracing = on; }

const Counters& Stack::counters() const { return impl_->stats; }

MemoryUse Stack::Memory() const {
  const MemoryBudget& b = impl_->budget;
  MemoryUse u;
  u.allocated = b.allocated();
  u.peak = b.peak();
  u.limit = b.limit();
  u.pressure = b.limit() != 0 ? b.pressure_level() : 0;
  u.low = b.limit() != 0 ? b.low() : 0;
  u.under_pressure = b.under_pressure();
  return u;
}

void Stack::VisitConnections(const std::function<void(SocketId, const SocketInfo&)>& fn) const {
  for (const Tcb* t : impl_->tcbs) {
    if (t == nullptr || t->reaping) continue;
    if (t->state() == TcpState::kClosed && !t->ever_connected() && !t->has_socket) continue;
    SocketInfo info;
    t->FillInfo(info);
    fn(t->has_socket ? impl_->IdOf(*t) : kNoSocket, info);
  }
}

std::array<size_t, kTcpStateCount> Stack::ConnectionsByState() const {
  std::array<size_t, kTcpStateCount> n{};
  for (const Tcb* t : impl_->tcbs) {
    if (t == nullptr || t->state() == TcpState::kListen) continue;
    if (t->state() == TcpState::kClosed && !t->ever_connected() && !t->done()) continue;
    n[static_cast<size_t>(t->state())]++;
  }
  return n;
}

size_t Stack::ClosesInProgress() const {
  const auto n = ConnectionsByState();
  return n[static_cast<size_t>(TcpState::kFinWait1)] + n[static_cast<size_t>(TcpState::kClosing)] +
         n[static_cast<size_t>(TcpState::kLastAck)];
}

}  // namespace shake
