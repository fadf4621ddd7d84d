// Generates the captures and trace logs that the `shake trace` golden tests draw: the
// conformance scenarios of issue 11, played between two shake::Stack instances in virtual time.
//
//   trace_scenarios OUTDIR        writes OUTDIR/NAME.pcap and OUTDIR/NAME.log for every scenario
//                                 (and OUTDIR/lost_fin.both.log, written by both stacks)
//
// Host A (198.18.0.1, "client", pid 1) and host B (198.18.0.2, "server", pid 2) are joined by a
// wire of 10 Mbit/s with 5 ms of delay each way. The capture is taken at A's device, as SHAKE_PCAP would: what
// A sends when it sends it (also when the wire then loses it), what reaches A when it arrives.
// NAME.log is A's event log (io::TraceLogWriter, A's StackObserver); lost_fin.both.log has both
// stacks appending to one file, as two processes would. Each scenario is a script of socket calls
// at fixed virtual times, plus the wire's losses and one injected segment (the RST scenario's
// spoofed reset). A run is a pure function of the code: the same bytes every time.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <memory_resource>
#include <queue>
#include <string>
#include <vector>

#include "io/trace_log.h"
#include "stack/stack.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"
#include "tests/stack/tcp_frame.h"

namespace shake {
namespace {

namespace fl = wire::tcpflag;

constexpr Duration kDelay = Duration::Millis(5);
constexpr int64_t kRateBps = 10'000'000;  // each direction serializes frames at 10 Mbit/s
const Ipv4Addr kA(198, 18, 0, 1);
const Ipv4Addr kB(198, 18, 0, 2);

Instant Ms(int64_t ms) { return Instant::FromNanos(1'000'000'000 + ms * 1'000'000); }

// A classic pcap, LINKTYPE_RAW, microsecond stamps taken from virtual time.
class Pcap {
 public:
  explicit Pcap(const std::string& path) : f_(std::fopen(path.c_str(), "wb")) {
    if (f_ == nullptr) {
      perror(path.c_str());
      exit(1);
    }
    const uint32_t h[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 262144, 101};
    std::fwrite(h, sizeof h, 1, f_);  // host order: the magic tells readers which
  }
  ~Pcap() { std::fclose(f_); }
  void Write(Instant t, const std::vector<std::byte>& frame) {
    const int64_t us = t.nanos() / 1000;
    const uint32_t h[4] = {static_cast<uint32_t>(us / 1000000), static_cast<uint32_t>(us % 1000000),
                           static_cast<uint32_t>(frame.size()),
                           static_cast<uint32_t>(frame.size())};
    std::fwrite(h, sizeof h, 1, f_);
    std::fwrite(frame.data(), 1, frame.size(), f_);
  }

 private:
  std::FILE* f_;
};

class Sink final : public FrameSink {
 public:
  std::span<std::byte> Acquire(size_t max_len) override {
    frames.emplace_back(max_len);
    return frames.back();
  }
  void Commit(size_t len) override { frames.back().resize(len); }
  std::vector<std::vector<std::byte>> frames;
};

class LogObserver final : public StackObserver {
 public:
  explicit LogObserver(io::TraceLogWriter* w) : w_(w) {}
  void OnTrace(const TraceEvent& e) override {
    if (w_ != nullptr) w_->Append(e);
  }

 private:
  io::TraceLogWriter* w_;
};

// Both A's and B's observers, when both log.
class TeeObserver final : public StackObserver {
 public:
  TeeObserver(StackObserver* a, StackObserver* b) : a_(a), b_(b) {}
  void OnTrace(const TraceEvent& e) override {
    if (a_) a_->OnTrace(e);
    if (b_) b_->OnTrace(e);
  }

 private:
  StackObserver* a_;
  StackObserver* b_;
};

struct Segment {
  int from;  // 0: A, 1: B
  wire::TcpHeader h;
  size_t len;
};

class World {
 public:
  // Which frames the wire loses: called for every frame put on the wire, with the count of
  // earlier frames of the same sender that had the same flags.
  std::function<bool(const Segment&, int nth)> lose = [](const Segment&, int) { return false; };

  World(const std::string& dir, const std::string& name, bool both_log) : pcap_(dir + "/" + name + ".pcap") {
    for (int s = 0; s < 2; ++s) {
      StackConfig c;
      c.addr = s == 0 ? kA : kB;
      c.prefix_len = 24;
      for (size_t i = 0; i < c.isn_secret.size(); ++i) {
        c.isn_secret[i] = static_cast<uint8_t>(i * 7 + static_cast<size_t>(s) + 1);
      }
      c.seed = static_cast<uint64_t>(s + 1);
      c.tcp.send_buffer = 64 * 1024;
      c.tcp.recv_buffer = 64 * 1024;
      stack_[s] = std::make_unique<Stack>(c, std::pmr::new_delete_resource());
      io::TraceHello h;
      h.pid = static_cast<uint32_t>(s + 1);
      h.addr = c.addr;
      h.prefix_len = 24;
      h.mono = Instant::FromNanos(0);
      h.real_ns = 0;  // wall clock = virtual time, as the pcap's
      h.comm = s == 0 ? "client" : "server";
      std::string err;
      if (s == 0 || both_log) {
        const std::string path = dir + "/" + name + (both_log ? ".both.log" : ".log");
        writer_[s] = io::TraceLogWriter::OpenWith(path, h, &err);
        if (!writer_[s]) {
          fprintf(stderr, "%s\n", err.c_str());
          exit(1);
        }
      }
      observer_[s] = std::make_unique<LogObserver>(writer_[s].get());
      stack_[s]->SetObserver(observer_[s].get());
    }
  }
  ~World() {
    for (auto& w : writer_) {
      if (w) w->Flush();
    }
  }

  Stack& a() { return *stack_[0]; }
  Stack& b() { return *stack_[1]; }
  Instant now() const { return now_; }

  // Schedules an action at virtual time t (socket calls on either stack).
  void At(Instant t, std::function<void()> f) { actions_.push_back({t, order_++, std::move(f)}); }
  // Delivers a segment to `to` now, as if the other host had sent it (it never went through
  // that host's stack). Call from an action.
  void Inject(int to, const wire::TcpHeader& h) {
    const Ipv4Addr src = to == 0 ? kB : kA, dst = to == 0 ? kA : kB;
    Arrive(InFlight{now_, order_++, to, testing::TcpFrame(src, dst, h)});
  }
  // The last segment `side` put on the wire.
  const Segment& last_sent(int side) const { return last_[side]; }

  // Runs until nothing is left to do (no action, no frame, no timer) or `limit`.
  void Run(Instant limit) {
    for (int guard = 0; guard < 1'000'000; ++guard) {
      Instant next = Instant::Never();
      for (const auto& s : stack_) next = Min(next, s->NextDeadline());
      if (!wire_.empty()) next = Min(next, wire_.top().when);
      for (const auto& a : actions_) next = Min(next, a.when);
      if (next.is_never() || next > limit) break;
      now_ = next < now_ ? now_ : next;
      // Actions due now, in the order they were given.
      for (;;) {
        size_t best = actions_.size();
        for (size_t i = 0; i < actions_.size(); ++i) {
          if (actions_[i].when <= now_ && (best == actions_.size() || actions_[i].order < actions_[best].order)) {
            best = i;
          }
        }
        if (best == actions_.size()) break;
        auto f = std::move(actions_[best].f);
        actions_.erase(actions_.begin() + static_cast<std::ptrdiff_t>(best));
        f();
        PollAll();
      }
      while (!wire_.empty() && wire_.top().when <= now_) {
        InFlight f = wire_.top();
        wire_.pop();
        Arrive(f);
      }
      PollAll();
    }
  }

 private:
  struct Action {
    Instant when;
    uint64_t order;
    std::function<void()> f;
  };
  struct InFlight {
    Instant when;
    uint64_t order;
    int to;
    std::vector<std::byte> frame;
    bool operator>(const InFlight& o) const {
      return when != o.when ? when > o.when : order > o.order;
    }
  };

  void Arrive(const InFlight& f) {
    if (f.to == 0) pcap_.Write(now_, f.frame);
    stack_[f.to]->Receive(now_, f.frame, sink_[f.to]);
    Send(f.to);
  }
  void PollAll() {
    for (int pass = 0; pass < 4; ++pass) {
      for (int s = 0; s < 2; ++s) {
        stack_[s]->Poll(now_, sink_[s]);
        Send(s);
      }
    }
  }
  void Send(int from) {
    for (auto& frame : sink_[from].frames) {
      wire::Ipv4Header ip;
      wire::Bytes payload;
      Segment seg{from, {}, 0};
      if (wire::ParseIpv4(frame, &ip, &payload) == Drop::kNone) {
        wire::Bytes data;
        if (wire::ParseTcp(payload, ip.src, ip.dst, &seg.h, &data) == Drop::kNone) {
          seg.len = data.size();
        }
      }
      last_[from] = seg;
      int& count = seen_[from][seg.h.flags];
      const bool lost = lose(seg, count++);
      if (from == 0) pcap_.Write(now_, frame);
      // Serialized one after another at the link rate, then the propagation delay.
      const Instant start = busy_[from] > now_ ? busy_[from] : now_;
      busy_[from] = start + Duration::Nanos(static_cast<int64_t>(frame.size()) * 8 *
                                            1'000'000'000 / kRateBps);
      if (!lost) wire_.push(InFlight{busy_[from] + kDelay, order_++, 1 - from, frame});
    }
    sink_[from].frames.clear();
  }

  Pcap pcap_;
  std::unique_ptr<Stack> stack_[2];
  std::unique_ptr<io::TraceLogWriter> writer_[2];
  std::unique_ptr<LogObserver> observer_[2];
  Sink sink_[2];
  Instant now_ = Ms(0);
  std::vector<Action> actions_;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> wire_;
  uint64_t order_ = 0;
  int seen_[2][256] = {};
  Segment last_[2] = {};
  Instant busy_[2] = {};
};

void Must(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "trace_scenarios: %s failed\n", what);
    exit(1);
  }
}

std::vector<std::byte> Bytes(size_t n, char c) { return std::vector<std::byte>(n, std::byte(c)); }

// The common opening: B listens on 80, A connects from 40000 at t=0, B accepts at t=30 ms.
struct Pair {
  SocketId listener = kNoSocket, a = kNoSocket, b = kNoSocket;
};
void Open(World& w, Pair& p, uint16_t port = 80) {
  w.At(Ms(0), [&w, &p, port] {
    auto l = w.b().Open();
    Must(l.ok(), "Open");
    p.listener = *l;
    Must(w.b().Bind(p.listener, Endpoint{kB, port}).ok(), "Bind");
    Must(w.b().Listen(p.listener, 16).ok(), "Listen");
    auto s = w.a().Open();
    Must(s.ok(), "Open");
    p.a = *s;
    Must(w.a().Bind(p.a, Endpoint{kA, 40000}).ok(), "Bind");
    (void)w.a().Connect(w.now(), p.a, Endpoint{kB, port});
  });
  w.At(Ms(30), [&w, &p] {
    auto s = w.b().Accept(p.listener);
    Must(s.ok(), "Accept");
    p.b = *s;
  });
}
void Drain(Stack& s, SocketId id) {
  std::byte buf[65536];
  for (int i = 0; i < 64; ++i) {
    auto r = s.Recv(id, buf);
    if (!r.ok() || *r == 0) break;
  }
}

void Handshake(const std::string& dir) {
  World w(dir, "handshake", false);
  Pair p;
  Open(w, p);
  w.At(Ms(50), [&] { (void)w.a().Send(p.a, Bytes(100, 'q')); });
  w.At(Ms(100), [&] {
    Drain(w.b(), p.b);
    (void)w.b().Send(p.b, Bytes(6000, 'r'));
  });
  w.At(Ms(200), [&] {
    Drain(w.a(), p.a);
    w.a().Close(w.now(), p.a);
  });
  w.At(Ms(300), [&] {
    Drain(w.b(), p.b);
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.Run(Ms(120'000));
}

void SimultaneousOpen(const std::string& dir) {
  World w(dir, "simultaneous_open", false);
  SocketId a = kNoSocket, b = kNoSocket;
  w.At(Ms(0), [&] {
    a = *w.a().Open();
    b = *w.b().Open();
    Must(w.a().Bind(a, Endpoint{kA, 5000}).ok(), "Bind");
    Must(w.b().Bind(b, Endpoint{kB, 6000}).ok(), "Bind");
    (void)w.a().Connect(w.now(), a, Endpoint{kB, 6000});
    (void)w.b().Connect(w.now(), b, Endpoint{kA, 5000});
  });
  w.At(Ms(100), [&] { w.a().Close(w.now(), a); });
  w.At(Ms(200), [&] {
    Drain(w.b(), b);
    w.b().Close(w.now(), b);
  });
  w.Run(Ms(120'000));
}

void SimultaneousClose(const std::string& dir) {
  World w(dir, "simultaneous_close", false);
  Pair p;
  Open(w, p);
  w.At(Ms(100), [&] {
    w.a().Close(w.now(), p.a);
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.Run(Ms(120'000));
}

void HalfClose(const std::string& dir) {
  World w(dir, "half_close", false);
  Pair p;
  Open(w, p);
  w.At(Ms(50), [&] {
    (void)w.a().Send(p.a, Bytes(100, 'q'));
    (void)w.a().Shutdown(w.now(), p.a, false, true);
  });
  w.At(Ms(100), [&] {
    Drain(w.b(), p.b);
    (void)w.b().Send(p.b, Bytes(3000, 'r'));
  });
  w.At(Ms(200), [&] {
    Drain(w.a(), p.a);
    (void)w.b().Send(p.b, Bytes(1000, 's'));
  });
  w.At(Ms(300), [&] {
    Drain(w.a(), p.a);
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.At(Ms(400), [&] {
    Drain(w.a(), p.a);
    w.a().Close(w.now(), p.a);
  });
  w.Run(Ms(120'000));
}

void LostFin(const std::string& dir, bool both) {
  World w(dir, "lost_fin", both);
  // The wire loses A's first FIN.
  w.lose = [](const Segment& s, int nth) { return s.from == 0 && (s.h.flags & fl::kFin) && nth == 0; };
  Pair p;
  Open(w, p);
  w.At(Ms(100), [&] { w.a().Close(w.now(), p.a); });
  w.At(Ms(2000), [&] {
    Drain(w.b(), p.b);
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.Run(Ms(120'000));
}

void Rst(const std::string& dir) {
  World w(dir, "rst", false);
  // 1. A SYN to a port where nothing listens: RST ACK.
  w.At(Ms(0), [&] {
    SocketId s = *w.a().Open();
    Must(w.a().Bind(s, Endpoint{kA, 39999}).ok(), "Bind");
    (void)w.a().Connect(w.now(), s, Endpoint{kB, 81});
  });
  // 2. A connection; B sends 200 bytes; then a spoofed RST "from B", in A's window but 1000
  //    past B's next sequence number (RFC 5961 3.2: A answers with a challenge ACK and stays);
  //    then A closes abortively (SO_LINGER 0) and its RST ends the connection at B.
  Pair p;
  w.At(Ms(100), [&] {
    p.listener = *w.b().Open();
    Must(w.b().Bind(p.listener, Endpoint{kB, 80}).ok(), "Bind");
    Must(w.b().Listen(p.listener, 16).ok(), "Listen");
    p.a = *w.a().Open();
    Must(w.a().Bind(p.a, Endpoint{kA, 40000}).ok(), "Bind");
    (void)w.a().Connect(w.now(), p.a, Endpoint{kB, 80});
  });
  w.At(Ms(130), [&] { p.b = *w.b().Accept(p.listener); });
  w.At(Ms(150), [&] { (void)w.b().Send(p.b, Bytes(200, 'r')); });
  w.At(Ms(250), [&] { Drain(w.a(), p.a); });
  w.At(Ms(300), [&] {
    const Segment& last = w.last_sent(1);  // B's last segment: its data
    wire::TcpHeader r;
    r.src_port = 80;
    r.dst_port = 40000;
    r.seq = last.h.seq + static_cast<uint32_t>(last.len) + 1000;
    r.flags = fl::kRst;
    w.Inject(0, r);
  });
  w.At(Ms(400), [&] {
    SocketOptions o = *w.a().GetOptions(p.a);
    o.linger = true;
    o.linger_time = Duration::Zero();
    Must(w.a().SetOptions(p.a, o).ok(), "SetOptions");
    w.a().Close(w.now(), p.a);
  });
  w.At(Ms(500), [&] {
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.Run(Ms(120'000));
}

void TimeWaitReack(const std::string& dir) {
  World w(dir, "time_wait_reack", false);
  // The wire loses A's ACK of B's FIN (A's first pure ACK after B's FIN reached it, at 205 ms).
  bool lost = false;
  w.lose = [&w, &lost](const Segment& s, int) {
    if (lost || s.from != 0 || s.h.flags != fl::kAck || s.len != 0 || w.now() < Ms(205)) {
      return false;
    }
    lost = true;
    return true;
  };
  Pair p;
  Open(w, p);
  w.At(Ms(100), [&] { w.a().Close(w.now(), p.a); });
  w.At(Ms(200), [&] {
    Drain(w.b(), p.b);
    w.b().Close(w.now(), p.b);
    w.b().Close(w.now(), p.listener);
  });
  w.Run(Ms(120'000));
}

}  // namespace
}  // namespace shake

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: trace_scenarios OUTDIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  shake::Handshake(dir);
  shake::SimultaneousOpen(dir);
  shake::SimultaneousClose(dir);
  shake::HalfClose(dir);
  shake::LostFin(dir, false);
  shake::LostFin(dir, true);
  shake::Rst(dir);
  shake::TimeWaitReack(dir);
  return 0;
}
