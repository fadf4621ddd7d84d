// Unit tests of what `shake trace` stands on: the trace log format (io/trace_log.h) with one
// writer driven by a shake::Stack in virtual time and with several processes appending to one
// file, the capture reader, the RFC 9293 state inference, and the ladder model's marks.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "io/trace_log.h"
#include "shim/launcher/trace/capture.h"
#include "stack/tcp/state_inference.h"
#include "shim/launcher/trace/model.h"
#include "shim/launcher/trace/render.h"
#include "stack/stack.h"
#include "stack/wire/tcp.h"
#include "tests/stack/tcp_frame.h"

namespace shake {
namespace {

namespace fl = wire::tcpflag;

std::string TempPath(const char* name) {
  return std::string(::testing::TempDir()) + "/ladder_test_" + std::to_string(getpid()) + "_" +
         name;
}

std::vector<std::byte> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  std::memcpy(b.data(), c.data(), c.size());
  return b;
}

io::TraceHello Hello(uint32_t pid, Ipv4Addr a) {
  io::TraceHello h;
  h.pid = pid;
  h.addr = a;
  h.prefix_len = 24;
  h.mono = Instant::FromNanos(1000);
  h.real_ns = 1'700'000'000'000'000'000;
  h.comm = "a-very-long-program-name";
  return h;
}

// ---- the log format ------------------------------------------------------------------------

TEST(TraceLog, EveryFieldRoundTrips) {
  const std::string path = TempPath("fields");
  unlink(path.c_str());
  std::string err;
  {
    auto w = io::TraceLogWriter::OpenWith(path, Hello(42, Ipv4Addr(198, 18, 0, 2)), &err);
    ASSERT_TRUE(w) << err;
    io::TraceRecord r;
    r.event.kind = TraceEvent::Kind::kSegmentOut;
    r.event.time = Instant::FromNanos(123456789012345);
    r.event.tuple = {Endpoint{Ipv4Addr(198, 18, 0, 2), 40000}, Endpoint{Ipv4Addr(198, 18, 0, 1), 80}};
    r.event.flags = fl::kSyn | fl::kAck;
    r.event.seq = SeqNum(0xfffffff0);
    r.event.ack = SeqNum(7);
    r.event.len = 1448;
    r.event.window = 65535;
    r.event.retransmit = true;
    r.marks = io::trace_mark::kChallengeAck | io::trace_mark::kOptionsRecorded;
    r.option_bits = io::trace_option::kMss | io::trace_option::kTimestamps;
    r.mss = 1460;
    r.window_scale = 7;
    r.ts_val = 0xdeadbeef;
    r.ts_ecr = 5;
    w->AppendRecord(r);
    TraceEvent s;
    s.kind = TraceEvent::Kind::kStateChange;
    s.time = Instant::FromNanos(5);
    s.from = TcpState::kFinWait1;
    s.to = TcpState::kTimeWait;
    w->Append(s);
    TraceEvent d;
    d.kind = TraceEvent::Kind::kDrop;
    d.drop = Drop::kPawsReject;
    w->Append(d);
  }  // the destructor flushes
  EXPECT_EQ(ReadAll(path).size(), 4 * io::kTraceRecordLen);
  io::TraceLog log;
  ASSERT_TRUE(io::ReadTraceLog(path, &log, &err)) << err;
  EXPECT_TRUE(log.warnings.empty());
  ASSERT_EQ(log.hellos.size(), 1u);
  EXPECT_EQ(log.hellos[0].pid, 42u);
  EXPECT_EQ(log.hellos[0].addr, Ipv4Addr(198, 18, 0, 2));
  EXPECT_EQ(log.hellos[0].comm, "a-very-long-pro");  // 15 characters kept
  EXPECT_EQ(log.hellos[0].real_ns, 1'700'000'000'000'000'000);
  ASSERT_EQ(log.events.size(), 3u);
  const io::TraceRecord& r = log.events[0];
  EXPECT_EQ(r.pid, 42u);
  EXPECT_EQ(r.event.kind, TraceEvent::Kind::kSegmentOut);
  EXPECT_EQ(r.event.time.nanos(), 123456789012345);
  EXPECT_EQ(r.event.tuple.local.port, 40000);
  EXPECT_EQ(r.event.tuple.remote.addr, Ipv4Addr(198, 18, 0, 1));
  EXPECT_EQ(r.event.flags, fl::kSyn | fl::kAck);
  EXPECT_EQ(r.event.seq.raw(), 0xfffffff0u);
  EXPECT_EQ(r.event.ack.raw(), 7u);
  EXPECT_EQ(r.event.len, 1448u);
  EXPECT_EQ(r.event.window, 65535u);
  EXPECT_TRUE(r.event.retransmit);
  EXPECT_EQ(r.marks, io::trace_mark::kRetransmit | io::trace_mark::kChallengeAck |
                         io::trace_mark::kOptionsRecorded);
  EXPECT_EQ(r.mss, 1460);
  EXPECT_EQ(r.window_scale, 7);
  EXPECT_EQ(r.ts_val, 0xdeadbeefu);
  EXPECT_EQ(log.events[1].event.from, TcpState::kFinWait1);
  EXPECT_EQ(log.events[1].event.to, TcpState::kTimeWait);
  EXPECT_EQ(log.events[2].event.drop, Drop::kPawsReject);
  EXPECT_EQ(log.HelloFor(2), &log.hellos[0]);
  unlink(path.c_str());
}

// What the writer records once TraceEvent carries options and the challenge mark: an event
// type that has them.
TEST(TraceLog, RecordsOptionsAndChallengeOnceTheEventCarriesThem) {
  struct Richer : TraceEvent {
    wire::TcpOptions options;
    bool challenge_ack = false;
  } e;
  e.options.mss = 1400;
  e.options.window_scale = 9;
  e.options.sack_permitted = true;
  e.options.timestamp = wire::TcpTimestamp{11, 22};
  e.challenge_ack = true;
  io::TraceRecord r;
  io::FillTraceExtras(e, r);
  EXPECT_EQ(r.marks, io::trace_mark::kOptionsRecorded | io::trace_mark::kChallengeAck);
  EXPECT_EQ(r.option_bits, io::trace_option::kMss | io::trace_option::kWindowScale |
                               io::trace_option::kSackPermitted | io::trace_option::kTimestamps);
  EXPECT_EQ(r.mss, 1400);
  EXPECT_EQ(r.window_scale, 9);
  EXPECT_EQ(r.ts_val, 11u);
  EXPECT_EQ(r.ts_ecr, 22u);
  // A segment without options: they count as recorded (so the ladder says "none" rather than
  // "unknown"), with no bit set and no challenge mark.
  io::TraceRecord plain;
  io::FillTraceExtras(TraceEvent{}, plain);
  EXPECT_EQ(plain.marks, io::trace_mark::kOptionsRecorded);
  EXPECT_EQ(plain.option_bits, 0);
}

TEST(TraceLog, RefusesWhatIsNotALogAndNewerVersions) {
  io::TraceLog log;
  std::string err;
  std::vector<std::byte> junk(64, std::byte{0x41});
  EXPECT_FALSE(io::ParseTraceLog(junk.data(), junk.size(), &log, &err));
  EXPECT_NE(err.find("not a libshake trace log"), std::string::npos);
  std::array<std::byte, io::kTraceRecordLen> h;
  io::EncodeHello(Hello(1, Ipv4Addr(198, 18, 0, 2)), h);
  h[16] = std::byte{2};  // version 2
  EXPECT_FALSE(io::ParseTraceLog(h.data(), h.size(), &log, &err));
  EXPECT_NE(err.find("newer"), std::string::npos);
}

TEST(TraceLog, DamageIsSkippedWithAWarning) {
  std::vector<std::byte> file;
  std::array<std::byte, io::kTraceRecordLen> rec;
  io::EncodeHello(Hello(7, Ipv4Addr(198, 18, 0, 2)), rec);
  file.insert(file.end(), rec.begin(), rec.end());
  for (int i = 0; i < 3; ++i) {
    io::TraceRecord r;
    r.pid = 7;
    r.event.seq = SeqNum(static_cast<uint32_t>(i));
    io::EncodeEvent(r, rec);
    file.insert(file.end(), rec.begin(), rec.end());
    if (i == 0) {  // a record cut short in the middle, as a killed writer leaves it
      file.insert(file.end(), rec.begin(), rec.begin() + 20);
    }
  }
  file.insert(file.end(), rec.begin(), rec.begin() + 10);  // and a cut tail
  io::TraceLog log;
  std::string err;
  ASSERT_TRUE(io::ParseTraceLog(file.data(), file.size(), &log, &err)) << err;
  ASSERT_EQ(log.events.size(), 3u);
  EXPECT_EQ(log.events[2].event.seq.raw(), 2u);
  ASSERT_EQ(log.warnings.size(), 2u);
  EXPECT_NE(log.warnings[0].find("skipped 20 damaged bytes"), std::string::npos) << log.warnings[0];
  EXPECT_NE(log.warnings[1].find("not a whole record"), std::string::npos) << log.warnings[1];
}

// Several processes append to one file at once (O_APPEND, whole records per write): every
// record arrives whole, each writer's in its own order, the first record is a Hello.
TEST(TraceLog, SeveralProcessesAppendToOneFile) {
  const std::string path = TempPath("multi");
  unlink(path.c_str());
  constexpr int kProcs = 4;
  constexpr uint32_t kEvents = 3000;  // 47 buffer flushes each
  std::string err;
  auto parent = io::TraceLogWriter::OpenWith(path, Hello(100, Ipv4Addr(198, 18, 0, 2)), &err);
  ASSERT_TRUE(parent) << err;
  TraceEvent unflushed;
  unflushed.seq = SeqNum(999999);
  parent->Append(unflushed);  // buffered: a child must not write it again
  std::vector<pid_t> kids;
  for (int p = 0; p < kProcs; ++p) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      parent->AfterFork(static_cast<uint32_t>(200 + p));
      for (uint32_t i = 0; i < kEvents; ++i) {
        TraceEvent e;
        e.seq = SeqNum(i);
        e.time = Instant::FromNanos(i);
        parent->Append(e);
        if (i % 17 == 0) parent->Flush();
      }
      parent->Flush();
      _exit(parent->error().empty() ? 0 : 1);
    }
    kids.push_back(pid);
  }
  for (pid_t k : kids) {
    int st = 0;
    ASSERT_EQ(waitpid(k, &st, 0), k);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  parent->Flush();
  parent.reset();
  io::TraceLog log;
  ASSERT_TRUE(io::ReadTraceLog(path, &log, &err)) << err;
  EXPECT_TRUE(log.warnings.empty()) << log.warnings[0];
  EXPECT_EQ(log.hellos.size(), 1u + kProcs);
  EXPECT_EQ(log.hellos[0].pid, 100u);
  std::map<uint32_t, uint32_t> next;
  for (const auto& r : log.events) {
    if (r.pid == 100) {
      EXPECT_EQ(r.event.seq.raw(), 999999u);
      continue;
    }
    ASSERT_GE(r.pid, 200u);
    EXPECT_EQ(r.event.seq.raw(), next[r.pid]++) << "pid " << r.pid;
    ASSERT_NE(log.HelloFor(static_cast<size_t>(&r - log.events.data())), nullptr);
  }
  EXPECT_EQ(log.events.size(), 1u + kProcs * kEvents);
  for (int p = 0; p < kProcs; ++p) EXPECT_EQ(next[200 + static_cast<uint32_t>(p)], kEvents);
  unlink(path.c_str());
}

// A writer fed by a real Stack's observer, in virtual time: the client side of a handshake and
// an active close, event by event.
class Collect final : public FrameSink {
 public:
  std::span<std::byte> Acquire(size_t n) override {
    frames.emplace_back(n);
    return frames.back();
  }
  void Commit(size_t n) override { frames.back().resize(n); }
  std::vector<std::vector<std::byte>> frames;
};
class ToWriter final : public StackObserver {
 public:
  explicit ToWriter(io::TraceLogWriter* w) : w_(w) {}
  void OnTrace(const TraceEvent& e) override { w_->Append(e); }

 private:
  io::TraceLogWriter* w_;
};

TEST(TraceLog, WrittenFromAStackInVirtualTime) {
  const std::string path = TempPath("stack");
  unlink(path.c_str());
  StackConfig ca, cb;
  ca.addr = Ipv4Addr(198, 18, 0, 1);
  cb.addr = Ipv4Addr(198, 18, 0, 2);
  for (size_t i = 0; i < 16; ++i) {
    ca.isn_secret[i] = static_cast<uint8_t>(i);
    cb.isn_secret[i] = static_cast<uint8_t>(i + 1);
  }
  Stack a(ca, std::pmr::new_delete_resource()), b(cb, std::pmr::new_delete_resource());
  std::string err;
  io::TraceHello h = Hello(1, ca.addr);
  h.mono = Instant::FromNanos(0);
  h.real_ns = 0;
  auto w = io::TraceLogWriter::OpenWith(path, h, &err);
  ASSERT_TRUE(w) << err;
  ToWriter obs(w.get());
  a.SetObserver(&obs);
  Collect sa, sb;
  Instant now = Instant::FromNanos(1'000'000);
  auto pump = [&] {
    for (int round = 0; round < 20; ++round) {
      a.Poll(now, sa);
      b.Poll(now, sb);
      if (sa.frames.empty() && sb.frames.empty()) return;
      auto fa = std::move(sa.frames), fb = std::move(sb.frames);
      sa.frames.clear();
      sb.frames.clear();
      for (auto& f : fa) b.Receive(now, f, sb);
      for (auto& f : fb) a.Receive(now, f, sa);
    }
  };
  SocketId l = *b.Open();
  ASSERT_TRUE(b.Bind(l, Endpoint{cb.addr, 80}).ok());
  ASSERT_TRUE(b.Listen(l, 4).ok());
  SocketId s = *a.Open();
  (void)a.Connect(now, s, Endpoint{cb.addr, 80});
  pump();
  now = now + Duration::Millis(10);
  a.Close(now, s);
  pump();
  w->Flush();
  io::TraceLog log;
  ASSERT_TRUE(io::ReadTraceLog(path, &log, &err)) << err;
  std::vector<std::string> seen;
  for (const auto& r : log.events) {
    const TraceEvent& e = r.event;
    EXPECT_EQ(e.tuple.local.addr, ca.addr);
    EXPECT_EQ(e.tuple.remote, (Endpoint{cb.addr, 80}));
    if (e.kind == TraceEvent::Kind::kStateChange) {
      seen.push_back(std::string(StateName(e.from)) + ">" + std::string(StateName(e.to)));
    } else {
      seen.push_back((e.kind == TraceEvent::Kind::kSegmentOut ? "out " : "in ") +
                     ladder::FlagNames(e.flags));
    }
  }
  const std::vector<std::string> want = {
      "CLOSED>SYN-SENT",       "out SYN",  "in SYN ACK",          "SYN-SENT>ESTABLISHED",
      "out ACK",               "ESTABLISHED>FIN-WAIT-1", "out FIN ACK", "in ACK",
      "FIN-WAIT-1>FIN-WAIT-2"};
  EXPECT_EQ(seen, want);
  EXPECT_EQ(w->records_written(), want.size());
  unlink(path.c_str());
}

// ---- the capture reader --------------------------------------------------------------------

std::vector<std::byte> Frame(uint8_t flags, uint32_t seq, size_t payload = 0) {
  wire::TcpHeader h;
  h.src_port = 1234;
  h.dst_port = 80;
  h.seq = SeqNum(seq);
  h.flags = flags;
  h.window = 1000;
  if (flags & fl::kSyn) h.options.mss = 1400;
  std::vector<std::byte> data(payload, std::byte{'x'});
  return testing::TcpFrame(Ipv4Addr(198, 18, 0, 1), Ipv4Addr(198, 18, 0, 2), h, data);
}

void Le32(std::vector<std::byte>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void Be32(std::vector<std::byte>& b, uint32_t v) {
  for (int i = 3; i >= 0; --i) b.push_back(static_cast<std::byte>(v >> (8 * i)));
}

TEST(Capture, ClassicPcapInBothByteOrdersAndResolutions) {
  for (int variant = 0; variant < 4; ++variant) {
    const bool big = variant & 1, nanos = variant & 2;
    auto put = [&](std::vector<std::byte>& b, uint32_t v) { big ? Be32(b, v) : Le32(b, v); };
    std::vector<std::byte> f;
    put(f, nanos ? 0xa1b23c4d : 0xa1b2c3d4);
    put(f, 0x00040002);  // the two u16 versions, good enough for the reader
    put(f, 0);
    put(f, 0);
    put(f, 65535);
    put(f, 101);
    const auto syn = Frame(fl::kSyn, 10);
    put(f, 5);
    put(f, nanos ? 7 : 7);
    put(f, static_cast<uint32_t>(syn.size()));
    put(f, static_cast<uint32_t>(syn.size()));
    f.insert(f.end(), syn.begin(), syn.end());
    ladder::Capture cap;
    std::string err;
    ASSERT_TRUE(ladder::ParseCapture(f.data(), f.size(), &cap, &err)) << err;
    ASSERT_EQ(cap.segments.size(), 1u) << variant;
    EXPECT_EQ(cap.segments[0].time_ns, 5'000'000'000 + (nanos ? 7 : 7000));
    EXPECT_EQ(cap.segments[0].seq.raw(), 10u);
    EXPECT_EQ(cap.segments[0].options.mss, 1400);
    EXPECT_EQ(cap.segments[0].src.port, 1234);
  }
}

TEST(Capture, LinkTypesSnaplenAndWhatIsSkipped) {
  ladder::Capture cap;
  ladder::WireSegment s;
  const auto data = Frame(fl::kAck | fl::kPsh, 99, 500);
  // Ethernet with a VLAN tag.
  std::vector<std::byte> eth(12, std::byte{0});
  eth.insert(eth.end(), {std::byte{0x81}, std::byte{0}, std::byte{0}, std::byte{5},
                         std::byte{0x08}, std::byte{0}});
  eth.insert(eth.end(), data.begin(), data.end());
  ASSERT_TRUE(ladder::DecodeFrame(1, eth.data(), eth.size(), 0, &cap, &s));
  EXPECT_EQ(s.len, 500u);
  // Linux cooked (SLL): protocol at offset 14.
  std::vector<std::byte> sll(14, std::byte{0});
  sll.insert(sll.end(), {std::byte{0x08}, std::byte{0}});
  sll.insert(sll.end(), data.begin(), data.end());
  ASSERT_TRUE(ladder::DecodeFrame(113, sll.data(), sll.size(), 0, &cap, &s));
  EXPECT_EQ(s.seq.raw(), 99u);
  // Cut by the snapshot length after the TCP header: the length still comes from IPv4.
  ASSERT_TRUE(ladder::DecodeFrame(101, data.data(), 60, 0, &cap, &s));
  EXPECT_EQ(s.len, 500u);
  // ARP on Ethernet, UDP, a later fragment, garbage, an unknown link type.
  std::vector<std::byte> arp(42, std::byte{0});
  arp[12] = std::byte{0x08};
  arp[13] = std::byte{0x06};
  EXPECT_FALSE(ladder::DecodeFrame(1, arp.data(), arp.size(), 0, &cap, &s));
  auto udp = data;
  udp[9] = std::byte{17};
  EXPECT_FALSE(ladder::DecodeFrame(101, udp.data(), udp.size(), 0, &cap, &s));
  auto frag = data;
  frag[7] = std::byte{8};
  EXPECT_FALSE(ladder::DecodeFrame(101, frag.data(), frag.size(), 0, &cap, &s));
  EXPECT_FALSE(ladder::DecodeFrame(101, data.data(), 30, 0, &cap, &s));
  EXPECT_FALSE(ladder::DecodeFrame(147, data.data(), data.size(), 0, &cap, &s));
  EXPECT_EQ(cap.skipped_not_ipv4, 1u);
  EXPECT_EQ(cap.skipped_not_tcp, 2u);
  EXPECT_EQ(cap.skipped_malformed, 2u);
}

TEST(Capture, Pcapng) {
  std::vector<std::byte> f;
  auto block = [&](uint32_t type, const std::vector<std::byte>& body) {
    const uint32_t len = static_cast<uint32_t>(12 + ((body.size() + 3) & ~size_t{3}));
    Le32(f, type);
    Le32(f, len);
    f.insert(f.end(), body.begin(), body.end());
    while ((f.size() % 4) != 0) f.push_back(std::byte{0});
    Le32(f, len);
  };
  std::vector<std::byte> shb;
  Le32(shb, 0x1a2b3c4d);
  Le32(shb, 1);  // versions 1.0
  Le32(shb, 0xffffffff);
  Le32(shb, 0xffffffff);  // section length unknown
  block(0x0a0d0d0a, shb);
  std::vector<std::byte> idb;
  Le32(idb, 101);  // link type, reserved
  Le32(idb, 0);    // snaplen
  // if_tsresol = 9 (nanoseconds)
  idb.insert(idb.end(), {std::byte{9}, std::byte{0}, std::byte{1}, std::byte{0}, std::byte{9},
                         std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0},
                         std::byte{0}, std::byte{0}});
  block(1, idb);
  const auto syn = Frame(fl::kSyn, 5);
  std::vector<std::byte> epb;
  Le32(epb, 0);
  const uint64_t ts = 3'000'000'123;
  Le32(epb, static_cast<uint32_t>(ts >> 32));
  Le32(epb, static_cast<uint32_t>(ts));
  Le32(epb, static_cast<uint32_t>(syn.size()));
  Le32(epb, static_cast<uint32_t>(syn.size()));
  epb.insert(epb.end(), syn.begin(), syn.end());
  block(6, epb);
  ladder::Capture cap;
  std::string err;
  ASSERT_TRUE(ladder::ParseCapture(f.data(), f.size(), &cap, &err)) << err;
  EXPECT_EQ(cap.format, "pcapng");
  ASSERT_EQ(cap.segments.size(), 1u);
  EXPECT_EQ(cap.segments[0].time_ns, 3'000'000'123);
  EXPECT_EQ(cap.segments[0].seq.raw(), 5u);
}

// ---- the state inference -------------------------------------------------------------------

struct Step {
  int from;
  uint8_t flags;
  uint32_t seq, ack, len;
  TcpState left, right;  // expected after the segment was sent and arrived
};

void Play(const std::vector<Step>& steps, bool peer_closed = false) {
  infer::Inference inf;
  const Step& f0 = steps.front();
  inf.Start({f0.from, f0.flags, SeqNum(f0.seq), SeqNum(f0.ack), f0.len}, peer_closed);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const infer::SegView v{s.from, s.flags, SeqNum(s.seq), SeqNum(s.ack), s.len};
    inf.Sent(v);
    inf.Received(v);
    EXPECT_EQ(StateName(inf.state(0)), StateName(s.left)) << "after segment " << i;
    EXPECT_EQ(StateName(inf.state(1)), StateName(s.right)) << "after segment " << i;
  }
}

using S = TcpState;
constexpr uint8_t kS = fl::kSyn, kA = fl::kAck, kF = fl::kFin, kR = fl::kRst;

TEST(Inference, OpenTransferAndActiveClose) {
  Play({{0, kS, 100, 0, 0, S::kSynSent, S::kSynReceived},
        {1, kS | kA, 300, 101, 0, S::kEstablished, S::kSynReceived},
        {0, kA, 101, 301, 0, S::kEstablished, S::kEstablished},
        {0, kA, 101, 301, 50, S::kEstablished, S::kEstablished},
        {0, kF | kA, 151, 301, 0, S::kFinWait1, S::kCloseWait},
        {1, kA, 301, 152, 0, S::kFinWait2, S::kCloseWait},
        {1, kF | kA, 301, 152, 0, S::kTimeWait, S::kLastAck},
        {0, kA, 152, 302, 0, S::kTimeWait, S::kClosed}});
}

TEST(Inference, SimultaneousOpenAndClose) {
  // RFC 9293 figure 8 and figure 13, with each segment arriving before the answer is sent.
  Play({{0, kS, 100, 0, 0, S::kSynSent, S::kSynReceived},
        {1, kS | kA, 300, 101, 0, S::kEstablished, S::kSynReceived},
        {0, kA, 101, 301, 0, S::kEstablished, S::kEstablished}});
  infer::Inference inf;
  inf.Start({0, kS, SeqNum(100), SeqNum(0), 0}, /*peer_closed=*/true);
  inf.Sent({0, kS, SeqNum(100), SeqNum(0), 0});
  inf.Sent({1, kS, SeqNum(300), SeqNum(0), 0});  // crossed: both SYN-SENT
  EXPECT_EQ(inf.state(1), S::kSynSent);
  inf.Received({0, kS, SeqNum(100), SeqNum(0), 0});
  inf.Received({1, kS, SeqNum(300), SeqNum(0), 0});
  EXPECT_EQ(inf.state(0), S::kSynReceived);
  EXPECT_EQ(inf.state(1), S::kSynReceived);
  inf.Sent({0, kS | kA, SeqNum(100), SeqNum(301), 0});
  inf.Sent({1, kS | kA, SeqNum(300), SeqNum(101), 0});
  inf.Received({0, kS | kA, SeqNum(100), SeqNum(301), 0});
  inf.Received({1, kS | kA, SeqNum(300), SeqNum(101), 0});
  EXPECT_EQ(inf.state(0), S::kEstablished);
  EXPECT_EQ(inf.state(1), S::kEstablished);
  // Both close at once: FIN-WAIT-1, CLOSING, TIME-WAIT on each side.
  inf.Sent({0, kF | kA, SeqNum(101), SeqNum(301), 0});
  inf.Sent({1, kF | kA, SeqNum(301), SeqNum(101), 0});
  inf.Received({0, kF | kA, SeqNum(101), SeqNum(301), 0});
  inf.Received({1, kF | kA, SeqNum(301), SeqNum(101), 0});
  EXPECT_EQ(inf.state(0), S::kClosing);
  EXPECT_EQ(inf.state(1), S::kClosing);
  inf.Sent({0, kA, SeqNum(102), SeqNum(302), 0});
  inf.Received({0, kA, SeqNum(102), SeqNum(302), 0});
  EXPECT_EQ(inf.state(1), S::kTimeWait);
}

TEST(Inference, ResetsAndChallenges) {
  // A SYN to a closed port: the RST ACK acknowledges it; both end CLOSED.
  infer::Inference inf;
  inf.Start({0, kS, SeqNum(100), SeqNum(0), 0}, /*peer_closed=*/true);
  inf.Sent({0, kS, SeqNum(100), SeqNum(0), 0});
  inf.Received({0, kS, SeqNum(100), SeqNum(0), 0});
  EXPECT_EQ(inf.state(1), S::kClosed);
  inf.Sent({1, kR | kA, SeqNum(0), SeqNum(101), 0});
  EXPECT_TRUE(inf.Received({1, kR | kA, SeqNum(0), SeqNum(101), 0}).rst_accepted);
  EXPECT_EQ(inf.state(0), S::kClosed);

  // Established: an in-window RST that is not exact is challenged; an exact one resets.
  infer::Inference e;
  const std::vector<infer::SegView> open = {{0, kS, SeqNum(100), SeqNum(0), 0},
                                             {1, kS | kA, SeqNum(300), SeqNum(101), 0},
                                             {0, kA, SeqNum(101), SeqNum(301), 0}};
  e.Start(open[0]);
  for (const auto& v : open) {
    e.Sent(v);
    e.Received(v);
  }
  const infer::SegView off{1, kR, SeqNum(1301), SeqNum(0), 0};
  EXPECT_FALSE(e.Sent(off));  // not at the sender's SND.NXT (301): not its connection's
  const infer::Outcome o = e.Received(off);
  EXPECT_TRUE(o.rst_not_exact);
  EXPECT_FALSE(o.rst_accepted);
  EXPECT_EQ(e.state(0), S::kEstablished);
  EXPECT_EQ(e.state(1), S::kEstablished);
  EXPECT_TRUE(e.Received({1, kS, SeqNum(300), SeqNum(0), 0}).syn_in_sync);
  const infer::SegView exact{1, kR, SeqNum(301), SeqNum(0), 0};
  EXPECT_TRUE(e.Sent(exact));
  EXPECT_TRUE(e.Received(exact).rst_accepted);
  EXPECT_EQ(e.state(0), S::kClosed);
  EXPECT_EQ(e.state(1), S::kClosed);
}

TEST(Inference, HalfCloseAndFinAgain) {
  Play({{0, kS, 100, 0, 0, S::kSynSent, S::kSynReceived},
        {1, kS | kA, 300, 101, 0, S::kEstablished, S::kSynReceived},
        {0, kF | kA, 101, 301, 10, S::kFinWait1, S::kCloseWait},   // data and FIN together
        {1, kA, 301, 112, 1000, S::kFinWait2, S::kCloseWait},      // the half-closed side sends
        {0, kA, 112, 1301, 0, S::kFinWait2, S::kCloseWait},
        {1, kF | kA, 1301, 112, 0, S::kTimeWait, S::kLastAck},
        {1, kF | kA, 1301, 112, 0, S::kTimeWait, S::kLastAck},     // its FIN again (ACK lost)
        {0, kA, 112, 1302, 0, S::kTimeWait, S::kClosed}});
}

// ---- the model: marks ----------------------------------------------------------------------

ladder::WireSegment W(int from, int64_t ms, uint8_t flags, uint32_t seq, uint32_t ack,
                      uint32_t len, int32_t id) {
  ladder::WireSegment w;
  const Endpoint a{Ipv4Addr(198, 18, 0, 1), 1000}, b{Ipv4Addr(198, 18, 0, 2), 80};
  w.src = from == 0 ? a : b;
  w.dst = from == 0 ? b : a;
  w.time_ns = ms * 1'000'000;
  w.flags = flags;
  w.seq = SeqNum(seq);
  w.ack = SeqNum(ack);
  w.len = len;
  w.window = 1000;
  w.ip_id = id;
  return w;
}

TEST(Model, RetransmissionDuplicateDupAckAndLoss) {
  ladder::Capture cap;
  cap.segments = {
      W(0, 0, kS, 100, 0, 0, 1),             W(1, 10, kS | kA, 300, 101, 0, 1),
      W(0, 10, kA, 101, 301, 0, 2),
      W(0, 20, kA, 101, 301, 100, 3),        // data 1:101
      W(0, 20, kA, 201, 301, 100, 4),        // data 101:201, lost on the way
      W(0, 21, kA, 301, 301, 100, 5),        // data 201:301
      W(1, 30, kA, 301, 201, 0, 2),          // ACK 101
      W(1, 31, kA, 301, 201, 0, 3),          // dup ACK 1
      W(1, 31, kA, 301, 201, 0, 3),          // the network's copy of it (same IP id)
      W(0, 40, kA, 201, 301, 100, 6),        // retransmission of 101:201
      W(1, 50, kA, 301, 401, 0, 4)};
  std::vector<std::string> warn;
  ladder::BuildOptions o;
  o.fold = false;
  auto conns = ladder::Build({&cap, nullptr}, o, &warn);
  ASSERT_EQ(conns.size(), 1u);
  const auto& s = conns[0].segs;
  ASSERT_EQ(s.size(), 11u);
  EXPECT_FALSE(s[3].marks.retransmit);
  EXPECT_TRUE(s[4].marks.lost);
  EXPECT_FALSE(s[5].marks.lost);
  EXPECT_EQ(s[7].marks.dup_ack, 1);
  EXPECT_TRUE(s[8].marks.duplicate);
  EXPECT_EQ(s[8].marks.dup_ack, 0);
  EXPECT_TRUE(s[9].marks.retransmit);
  EXPECT_FALSE(s[9].marks.lost);
  EXPECT_EQ(conns[0].rows.size(), 11u);
  // Folded, the lost segment breaks the run of data: no burst of two plain data segments.
  auto folded = ladder::Build({&cap, nullptr}, {}, &warn);
  for (const auto& r : folded[0].rows) EXPECT_NE(r.kind, ladder::RowKind::kBurst);
}

TEST(Model, PlainDataFoldsIntoOneBurstUntilAPause) {
  ladder::Capture cap;
  cap.segments = {W(0, 0, kS, 100, 0, 0, 1),       W(1, 10, kS | kA, 300, 101, 0, 1),
                  W(0, 10, kA, 101, 301, 0, 2),    W(1, 20, kA, 301, 101, 1000, 2),
                  W(1, 21, kA, 1301, 101, 1000, 3), W(0, 21, kA, 101, 2301, 0, 3),
                  W(1, 22, kA, 2301, 101, 500, 4),  W(0, 23, kA, 101, 2801, 0, 4),
                  // a pause of 1 s (the handshake's round trip is 10 ms): a new burst
                  W(1, 1023, kA, 2801, 101, 100, 5), W(1, 1024, kA, 2901, 101, 100, 6)};
  std::vector<std::string> warn;
  auto conns = ladder::Build({&cap, nullptr}, {}, &warn);
  ASSERT_EQ(conns.size(), 1u);
  std::vector<const ladder::Row*> bursts;
  for (const auto& r : conns[0].rows) {
    if (r.kind == ladder::RowKind::kBurst) bursts.push_back(&r);
  }
  ASSERT_EQ(bursts.size(), 2u);
  EXPECT_EQ(bursts[0]->data_segments, 3u);
  EXPECT_EQ(bursts[0]->bytes, 2500u);
  EXPECT_EQ(bursts[0]->acks, 1u);  // the ACK between; the one after the last data stays a row
  EXPECT_EQ(bursts[0]->from, 1);
  EXPECT_EQ(bursts[1]->data_segments, 2u);
  EXPECT_EQ(conns[0].rows.size(), 3u + 1u + 1u + 1u);
  const ladder::RowLines l = ladder::DescribeRow(conns[0], *bursts[0], {});
  EXPECT_EQ(l.label, "data seq 1:2501 (3 segments)");
  ASSERT_FALSE(l.details.empty());
  EXPECT_EQ(l.details[0], "2500 bytes in 0.002 s");
}

}  // namespace
}  // namespace shake
