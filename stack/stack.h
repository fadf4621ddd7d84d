// The libshake TCP/IPv4 stack: a sans-IO engine.
//
// Frames, time and socket calls go in; frames, readiness changes and the next deadline come out.
// The stack never reads a clock, makes a syscall, starts a thread or touches a global: the host
// (io/ in production, a test or simulator otherwise) owns all of that.
//
// Usage, in a host loop:
//   shake::Stack stack(config, memory_resource);
//   for (;;) {
//     for (each received frame) stack.Receive(now, frame, sink);
//     Instant next = stack.Poll(now, sink);   // timers and queued output
//     sleep until a frame arrives, an application call is made, or `next`
//   }
// Socket calls (Connect, Send, Close, ...) only change state and queue work; the next Poll sends
// what they queued. All memory comes from the memory_resource passed in, so a host may place the
// whole stack in shared memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory_resource>
#include <optional>
#include <span>
#include <string_view>

#include "stack/base/addr.h"
#include "stack/base/result.h"
#include "stack/base/seqnum.h"
#include "stack/base/time.h"
#include "stack/counters.h"
#include "stack/ip/reassembly.h"
#include "stack/wire/tcp.h"

namespace shake {

// Where the stack writes outgoing frames. The io engine hands out slots in its transmit batch;
// tests collect frames in a vector.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // A buffer for one frame of up to `max_len` bytes, or an empty span when the device cannot take
  // more now (the stack counts Drop::kTxFull and relies on retransmission).
  virtual std::span<std::byte> Acquire(size_t max_len) = 0;
  // Sends the first `len` bytes of the span last returned by Acquire.
  virtual void Commit(size_t len) = 0;
};

// The RFC 9293 states, in the RFC's order.
enum class TcpState : uint8_t {
  kClosed,
  kListen,
  kSynSent,
  kSynReceived,
  kEstablished,
  kFinWait1,
  kFinWait2,
  kCloseWait,
  kClosing,
  kLastAck,
  kTimeWait,
};
inline constexpr size_t kTcpStateCount = 11;
// "SYN-SENT", "TIME-WAIT", ... as RFC 9293 spells them.
std::string_view StateName(TcpState s);
// The number Linux gives the state in tcp_info's tcpi_state (include/net/tcp_states.h).
uint8_t LinuxStateNumber(TcpState s);

enum class LinkMode : uint8_t {
  kIp,        // frames are bare IPv4 packets (a TUN device without packet information)
  kEthernet,  // frames are Ethernet II; the stack answers ARP for its address
};

// The sender's congestion controller (TcpConfig::congestion_control).
enum class CongestionControl : uint8_t {
  kReno,   // RFC 5681 / RFC 6582: slow start (RFC 3465 ABC, L = 2), halve on loss, +1 MSS per RTT
  kCubic,  // RFC 9438: beta 0.7, C 0.4, Reno-friendly region and fast convergence (Linux default)
};

// Explicit Congestion Notification (RFC 3168) for TCP, with Linux's tcp_ecn values.
enum class EcnMode : uint8_t {
  kOff,      // 0: never: SYNs do not ask for it, and a peer's request is declined
  kOn,       // 1: our SYNs ask for it, and a peer's request is accepted
  kPassive,  // 2: only a peer's request is accepted (Linux's default)
};

struct TcpConfig {
  // The most a connection's send buffer holds (Linux tcp_wmem[2]). Without SO_SNDBUF it starts
  // at the initial window's worth and grows with cwnd (Tcb::ExpandSendBuffer, Linux's
  // tcp_sndbuf_expand); SO_SNDBUF fixes it. Memory is used only as data is queued.
  size_t send_buffer = 1 << 20;
  size_t recv_buffer = 1 << 20;
  bool sack = true;
  bool timestamps = true;
  bool window_scaling = true;
  Duration rto_initial = Duration::Seconds(1);  // RFC 6298 (2.1)
  Duration rto_min = Duration::Millis(200);      // Linux's TCP_RTO_MIN
  Duration rto_max = Duration::Seconds(120);     // Linux's TCP_RTO_MAX
  int syn_retries = 6;                           // Linux tcp_syn_retries
  int synack_retries = 5;                        // Linux tcp_synack_retries
  int data_retries = 15;                         // Linux tcp_retries2
  Duration delayed_ack = Duration::Millis(40);   // Linux's TCP_DELACK_MIN
  Duration time_wait = Duration::Seconds(60);    // 2*MSL, as Linux's TCP_TIMEWAIT_LEN
  Duration fin_wait2_timeout = Duration::Seconds(60);  // Linux tcp_fin_timeout
  Duration keepalive_time = Duration::Seconds(7200);
  Duration keepalive_interval = Duration::Seconds(75);
  int keepalive_probes = 9;
  Duration challenge_ack_interval = Duration::Millis(500);  // Linux tcp_invalid_ratelimit
  int default_backlog_limit = 4096;                          // Linux somaxconn
  uint16_t ephemeral_low = 32768;                            // Linux ip_local_port_range
  uint16_t ephemeral_high = 60999;
  // Congestion control for the data we send. Linux's default is CUBIC as well.
  CongestionControl congestion_control = CongestionControl::kCubic;
  // RFC 8985 section 7 tail loss probes (SACK connections only): when the tail of a flight gets
  // no ACK within a probe timeout (about 2*SRTT), send one probe segment instead of waiting for
  // the RTO. Linux's tcp_early_retrans >= 3 (its default); set false to match
  // tcp_early_retrans=0, where only the RTO recovers a lost tail.
  bool tail_loss_probe = true;
  // RFC 5681 4.1 / RFC 7661 in Linux's form (tcp_slow_start_after_idle, tcp_cwnd_restart):
  // sending after more than an RTO without data in flight first shrinks cwnd, halving it per
  // RTO idle down to the initial window. Linux's default is on; off keeps cwnd across idle.
  bool slow_start_after_idle = false;
  // RFC 4987 3.6 SYN cookies, as Linux's tcp_syncookies=1 (its default): while a listener's
  // SYN queue is full (more than `backlog` handshakes in progress), a SYN is answered with a
  // cookie SYN-ACK and no state; a valid cookie in the final ACK creates the connection. Off:
  // such SYNs are dropped (Drop::kSynQueueFull), as tcp_syncookies=0.
  bool syn_cookies = true;
  // RFC 3168 ECN: negotiated in the handshake (6.1.1); then data carries ECT(0), a CE mark is
  // echoed with ECE until the sender's CWR, and an ECE reduces cwnd as a loss would, at most
  // once per window (Linux's CWR state, with PRR). Linux's default: accept, never ask.
  EcnMode ecn = EcnMode::kPassive;
  // The stack-wide memory for connections' data, as Linux's tcp_mem (in bytes, not pages):
  // what every connection's send queue, receive queue (out-of-order bytes and their ranges
  // included) and transmit records hold, together. Above memory_pressure, until the account
  // falls back to memory_low, advertised windows and send buffers stop growing; at
  // memory_limit a segment that needs new memory is dropped before it is stored (counted in
  // tcp_ofo_mem_drops and tcp_rcvq_drops; the peer retransmits it) and a send takes only what
  // fits in memory its connection holds (tcp_send_mem_limited; EAGAIN, so a blocking caller
  // waits for writability, as sk_stream_wait_memory). Zero: no limit. A zero memory_pressure
  // or memory_low is 2/3 or 1/2 of memory_limit, the ratios of Linux's default tcp_mem.
  size_t memory_limit = 0;
  size_t memory_pressure = 0;
  size_t memory_low = 0;
};

struct StackConfig {
  LinkMode link = LinkMode::kIp;
  Ipv4Addr addr;
  int prefix_len = 24;
  std::optional<Ipv4Addr> gateway;
  MacAddr mac;          // kEthernet only
  uint16_t mtu = 1500;  // IP MTU of the device
  TcpConfig tcp;
  ReassemblyLimits reassembly;
  Duration arp_cache_ttl = Duration::Seconds(60);
  std::array<uint8_t, 16> isn_secret{};  // RFC 6528's secret key; the host fills it from its RNG
  uint64_t seed = 0;                     // ephemeral port order and timestamp offsets
};

// The memory account of TcpConfig::memory_limit, for `shake stat` and tests.
struct MemoryUse {
  size_t allocated = 0;  // bytes the connections hold now
  size_t peak = 0;       // the most they held at once
  size_t low = 0;        // the levels in force (0: no limit)
  size_t pressure = 0;
  size_t limit = 0;
  bool under_pressure = false;
};

using SocketId = uint32_t;
inline constexpr SocketId kNoSocket = 0;

// Readiness bits, with poll(2)'s meanings; the shim maps them to POLL*/EPOLL* values.
namespace ready {
inline constexpr uint32_t kReadable = 1u << 0;    // data, EOF, a pending connection, or an error
inline constexpr uint32_t kWritable = 1u << 1;    // send buffer space in a connected state
inline constexpr uint32_t kError = 1u << 2;       // a pending error (SO_ERROR)
inline constexpr uint32_t kHangup = 1u << 3;      // both directions are shut (POLLHUP)
inline constexpr uint32_t kReadHangup = 1u << 4;  // the peer sent FIN (POLLRDHUP)
}  // namespace ready

// IP_MTU_DISCOVER's modes, numbered as Linux's IP_PMTUDISC_* values, with what they mean for a
// TCP socket there (ip_dont_fragment, tcp_v4_mtu_reduced): DF goes out in kWant (the default,
// net.ipv4.ip_no_pmtu_disc=0) and kDo only; an ICMP "fragmentation needed" lowers the MSS in
// every mode but kDont, kInterface and kOmit.
enum class PmtuDiscovery : uint8_t { kDont = 0, kWant = 1, kDo = 2, kProbe = 3, kInterface = 4, kOmit = 5 };
inline bool SendsDontFragment(PmtuDiscovery m) {
  return m == PmtuDiscovery::kWant || m == PmtuDiscovery::kDo;
}
inline bool AcceptsPathMtu(PmtuDiscovery m) {
  return m != PmtuDiscovery::kDont && m != PmtuDiscovery::kInterface && m != PmtuDiscovery::kOmit;
}

// Per-socket options, mirroring the SOL_SOCKET, IPPROTO_TCP and IPPROTO_IP options the shim
// supports.
struct SocketOptions {
  bool no_delay = false;       // TCP_NODELAY
  bool cork = false;           // TCP_CORK
  bool keepalive = false;      // SO_KEEPALIVE
  Duration keepalive_time;     // TCP_KEEPIDLE; zero means the stack's default
  Duration keepalive_interval; // TCP_KEEPINTVL; zero means the stack's default
  int keepalive_probes = 0;    // TCP_KEEPCNT; zero means the stack's default
  Duration user_timeout;       // TCP_USER_TIMEOUT; zero means none
  bool linger = false;         // SO_LINGER on/off
  Duration linger_time;        // SO_LINGER l_linger; linger with zero time aborts on close
  size_t send_buffer = 0;      // SO_SNDBUF; zero means the stack's default
  size_t recv_buffer = 0;      // SO_RCVBUF; zero means the stack's default
  uint16_t max_segment = 0;    // TCP_MAXSEG; zero means derived from the MTU
  bool reuse_addr = false;     // SO_REUSEADDR
  bool reuse_port = false;     // SO_REUSEPORT
  bool quick_ack = false;      // TCP_QUICKACK
  int syn_count = 0;           // TCP_SYNCNT; zero means the stack's default
  Duration linger2;            // TCP_LINGER2: orphan FIN-WAIT-2 lifetime; zero means the stack's
                               // default, negative means reset at once
  uint8_t tos = 0;             // IP_TOS: the DSCP bits of every segment; the two ECN bits stay
                               // the stack's (RFC 3168), as Linux keeps them on TCP sockets
  PmtuDiscovery pmtu_discovery = PmtuDiscovery::kWant;  // IP_MTU_DISCOVER
  bool zerocopy = false;       // SO_ZEROCOPY: MSG_ZEROCOPY sends are numbered and notified
};

// A completion of MSG_ZEROCOPY sends (Linux's SO_EE_ORIGIN_ZEROCOPY notification): the sends
// numbered `lo` through `hi` (counted from 0 per socket) are done with the caller's buffers.
// The stack copies every send into its own queue, so each is complete when the call returns,
// as Linux reports with SO_EE_CODE_ZEROCOPY_COPIED when it had to copy.
struct ZerocopyDone {
  uint32_t lo = 0;
  uint32_t hi = 0;
};

// What getsockname/getpeername/SO_ERROR/FIONREAD/SIOCOUTQ/TCP_INFO need.
struct SocketInfo {
  TcpState state = TcpState::kClosed;
  Endpoint local;
  Endpoint remote;
  int pending_error = 0;      // SO_ERROR, not cleared by Info()
  size_t readable_bytes = 0;  // FIONREAD
  size_t unsent_bytes = 0;    // SIOCOUTQ: queued and not yet acknowledged
  size_t send_space = 0;
  bool listening = false;
  // The socket's life as the POSIX calls see it, so that callers need not reason about TCP
  // states: the handshake is in progress (connect() would block); the socket has a peer and has
  // not reached CLOSED (getpeername() answers, as on Linux); the connection has ended.
  bool connecting = false;
  bool connected = false;
  bool ended = false;
  uint16_t mss = 0;           // effective send MSS
  Duration srtt;
  Duration rttvar;
  Duration rto;
  uint32_t cwnd = 0;          // in bytes
  uint32_t ssthresh = 0;
  uint8_t snd_wscale = 0;
  uint8_t rcv_wscale = 0;
  bool sack_enabled = false;
  bool timestamps_enabled = false;
  uint64_t retransmits = 0;
  // For TCP_INFO, in Linux's terms. The congestion state (tcpi_ca_state): 0 open, 1 disorder
  // (duplicate ACKs or SACKs seen, no recovery yet), 2 CWR (an ECN echo reduced cwnd),
  // 3 recovery, 4 loss (after a timeout).
  uint8_t ca_state = 0;
  uint32_t unacked_segments = 0;  // sent, not cumulatively acknowledged (tcpi_unacked)
  uint32_t sacked_segments = 0;   // of those, covered by SACK blocks (tcpi_sacked)
  uint32_t lost_segments = 0;     // marked lost and not SACKed (tcpi_lost)
  uint32_t retrans_segments = 0;  // retransmissions still in flight (tcpi_retrans)
  uint32_t reordering = 3;        // the reordering degree in segments (tcpi_reordering)
  uint32_t reord_seen = 0;        // SACKs that showed reordering (tcpi_reord_seen)
  bool ecn_enabled = false;       // RFC 3168 ECN negotiated (tcpi_options' TCPI_OPT_ECN)
  int probes = 0;                 // unanswered zero-window or keepalive probes (tcpi_probes)
  int backoff = 0;                // RTO exponential backoff count (tcpi_backoff)
  uint16_t advmss = 0;            // the MSS we advertised (tcpi_advmss)
  uint16_t rcv_mss = 0;           // estimate of the peer's segment size (tcpi_rcv_mss)
  Instant last_data_received;     // when data last arrived (tcpi_last_data_recv)
  // Linux's TCP_INFO chronographs (tcp_chrono_start/stop): how long the connection had data
  // to send (kind 1, busy), and of that how long the peer's window (2, tcpi_rwnd_limited) or
  // the send buffer (3, tcpi_sndbuf_limited) held it back. One runs at a time, the highest
  // kind that applies; `chrono` holds the finished periods, and the running one, of kind
  // `chrono_running` (0: none), began at `chrono_since`. tcpi_busy_time is the sum of all.
  std::array<Duration, 3> chrono{};
  uint8_t chrono_running = 0;
  Instant chrono_since;
  Duration Chrono(int kind, Instant now) const {
    Duration d = chrono[static_cast<size_t>(kind - 1)];
    if (chrono_running == kind) d = d + (now - chrono_since);
    return d;
  }
};

// One connection event, for `shake trace` and tests. Only delivered when an observer is set.
struct TraceEvent {
  enum class Kind : uint8_t { kSegmentIn, kSegmentOut, kStateChange, kDrop };
  Kind kind = Kind::kSegmentIn;
  Instant time;
  FourTuple tuple;
  TcpState from = TcpState::kClosed;  // kStateChange
  TcpState to = TcpState::kClosed;
  uint8_t flags = 0;  // segments
  SeqNum seq;
  SeqNum ack;
  uint32_t len = 0;
  uint32_t window = 0;
  bool retransmit = false;  // kSegmentOut: data (or SYN, FIN) sent again
  Drop drop = Drop::kNone;
  wire::TcpOptions options;    // segments: the options the segment carries
  bool challenge_ack = false;  // kSegmentOut: an ACK sent as an RFC 5961 challenge
};

class StackObserver {
 public:
  virtual ~StackObserver() = default;
  // The socket's readiness may have changed; call Readiness(id) for the new value.
  virtual void OnReadiness(SocketId /*id*/) {}
  virtual void OnTrace(const TraceEvent& /*event*/) {}
};

class Stack {
 public:
  Stack(const StackConfig& config, std::pmr::memory_resource* memory);
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  const StackConfig& config() const;
  // Sets the next hop for destinations off the subnet (a route added while the stack runs).
  void SetGateway(std::optional<Ipv4Addr> gateway);

  // ---- Frames ----------------------------------------------------------------------------
  // One received frame (Ethernet or IPv4 per LinkMode). Replies that need no connection state
  // (ARP, ICMP echo, RST for no connection) and a connection's immediate answers go to `out`.
  // `checksum_trusted`: the device vouches for the transport checksum (e.g. a veth frame with a
  // partial checksum), so it is not verified.
  void Receive(Instant now, std::span<const std::byte> frame, FrameSink& out,
               bool checksum_trusted = false);
  // Runs due timers and sends output queued by socket calls. Returns the next deadline.
  Instant Poll(Instant now, FrameSink& out);
  Instant NextDeadline() const;

  // ---- Sockets ---------------------------------------------------------------------------
  Result<SocketId> Open();
  Result0 Bind(SocketId s, Endpoint local);  // port 0: an ephemeral port
  Result0 Listen(SocketId s, int backlog);
  // A connection from the accept queue, or EAGAIN.
  Result<SocketId> Accept(SocketId listener);
  // Starts an active open; returns EINPROGRESS (or an immediate error). Completion shows as
  // writability, failure as kError with pending_error set.
  Result0 Connect(Instant now, SocketId s, Endpoint remote);
  // Queues up to data.size() bytes; EAGAIN when the send buffer is full, EPIPE after shutdown
  // or once the connection is gone. `more`: MSG_MORE, hold a partial segment for more data.
  Result<size_t> Send(SocketId s, std::span<const std::byte> data, bool more = false);
  // The same with send(2)'s MSG_MORE and MSG_EOR: `eor` ends a record when all of `data` is
  // queued, and no segment then carries bytes of two records (Linux's MSG_EOR).
  struct SendFlags {
    bool more = false;
    bool eor = false;
    // MSG_ZEROCOPY: on a socket with SO_ZEROCOPY set, a send that queues bytes gets the next
    // number and its completion waits in TakeZerocopyDone (readiness then has kError, as
    // Linux's error queue raises POLLERR). Without SO_ZEROCOPY the flag changes nothing.
    bool zerocopy = false;
  };
  Result<size_t> Send(SocketId s, std::span<const std::byte> data, SendFlags flags);
  // Reads up to buf.size() bytes; 0 at end of stream; EAGAIN when nothing is there yet.
  Result<size_t> Recv(SocketId s, std::span<std::byte> buf, bool peek = false);
  Result0 Shutdown(Instant now, SocketId s, bool read, bool write);
  // Releases the socket id. The connection may live on (FIN-WAIT, TIME-WAIT), or be reset when
  // unread data remains or linger is zero, as RFC 9293 and Linux do.
  void Close(Instant now, SocketId s);

  // Takes effect at once; as Linux's setsockopt(TCP_NODELAY, 1), a call with no_delay set
  // pushes what Nagle, TCP_CORK or MSG_MORE hold, and clearing cork pushes too.
  Result0 SetOptions(SocketId s, const SocketOptions& options);
  Result<SocketOptions> GetOptions(SocketId s) const;
  // The options as they take effect: every "zero means the stack's default" field filled in
  // from TcpConfig (keepalive 7200 s / 75 s / 9 probes, SYN retries, buffer sizes), as
  // getsockopt reports them on Linux.
  Result<SocketOptions> EffectiveOptions(SocketId s) const;
  Result<SocketInfo> Info(SocketId s) const;
  // SO_ERROR: returns and clears the pending error.
  int TakeError(SocketId s);
  // recvmsg(MSG_ERRQUEUE) for MSG_ZEROCOPY: the completed sends not yet reported, coalesced
  // into one range as Linux coalesces consecutive ones; nullopt when there are none.
  std::optional<ZerocopyDone> TakeZerocopyDone(SocketId s);
  uint32_t Readiness(SocketId s) const;

  void SetObserver(StackObserver* observer);
  // Whether the observer hears of connection events (OnTrace); on by default. A host that
  // observes only readiness turns it off, and the stack builds no TraceEvent.
  void SetTracing(bool on);

  const Counters& counters() const;
  MemoryUse Memory() const;
  // Calls fn(id, info) for every control block: sockets (listeners included) with their id,
  // orphans (closed sockets still in FIN-WAIT, LAST-ACK, TIME-WAIT...) with kNoSocket. For
  // `shake stat`; O(blocks).
  void VisitConnections(const std::function<void(SocketId, const SocketInfo&)>& fn) const;
  // Connections (not listeners) in each state, including orphans in FIN-WAIT and TIME-WAIT.
  std::array<size_t, kTcpStateCount> ConnectionsByState() const;
  // Connections that have queued their FIN and still wait for it, and the data before it, to be
  // acknowledged (FIN-WAIT-1, CLOSING, LAST-ACK). A host about to stop driving the stack (the
  // last process leaving) keeps going while this is non-zero, as the kernel keeps an orphan.
  size_t ClosesInProgress() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace shake
