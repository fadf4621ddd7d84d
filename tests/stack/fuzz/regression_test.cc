// Replays the checked-in fuzz corpus (tests/stack/fuzz/corpus/) through the fuzzing harness and
// checks what the stack did with each known attack class: dropped and counted under the right
// Drop reason, or handled as the RFC says. Any other file in the directory (a fuzzer finding
// added later) is replayed for "nothing crashed".
//
// Each named entry is built here by code (so the bytes are explained) and compared with its
// checked-in file; after a change to the harness or the fixture, regenerate the files with
//   SHAKE_UPDATE_CORPUS=1 build/tests/stack/fuzz/fuzz_regression_test
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "stack/wire/checksum.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"
#include "tests/stack/fuzz/fuzz_harness.h"

namespace shake::fuzz {
namespace {

namespace flag = wire::tcpflag;
using Bytes = std::vector<std::byte>;

std::filesystem::path CorpusDir() { return SHAKE_FUZZ_CORPUS_DIR; }

uint64_t Delta(const Harness& h, Drop d) {
  return h.counters().dropped(d) - h.baseline().dropped(d);
}

// A bare IPv4 + TCP frame (20 + 20 bytes, plus `extra` zero bytes), with addresses and ports
// left for RawFixed to fill in. Byte 0 is 0x45 and the total length is right.
Bytes TcpFrame(uint8_t flags, size_t extra = 0) {
  Bytes f(40 + extra);
  std::span<std::byte> s(f);
  wire::Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(f.size());
  ip.protocol = wire::kProtoTcp;
  ip.src = Harness::kPeer;
  ip.dst = Harness::kUs;
  wire::EmitIpv4(s, ip);
  wire::TcpHeader t;
  t.src_port = 40000;
  t.dst_port = 80;
  t.seq = SeqNum(1);
  t.flags = flags;
  t.window = 1000;
  wire::EmitTcpHeader(s.subspan(20), t);
  return f;
}

void Put8(Bytes& f, size_t off, uint8_t v) { f[off] = std::byte{v}; }
void Put16(Bytes& f, size_t off, uint16_t v) { wire::Store16(std::span<std::byte>(f), off, v); }
void Put32(Bytes& f, size_t off, uint32_t v) { wire::Store32(std::span<std::byte>(f), off, v); }

std::vector<uint8_t> Be32(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

// Opens the stack's window for conn c and has it send `n` bytes that stay unacknowledged.
void SendUnacked(InputBuilder& b, uint8_t c, uint16_t n) { b.Socket(Call::kSend, c, n); }

// A TCP segment on conn 2 (SYN-SENT) answering the stack's SYN.
SegmentSpec SynAck(std::vector<uint8_t> options, uint32_t ack_delta = 0) {
  SegmentSpec s;
  s.conn = 2;
  s.flags = flag::kSyn | flag::kAck;
  s.mode = mode::kSeqRelative | mode::kAckRelative;
  s.ack = ack_delta;
  s.window = 65535;
  s.options = std::move(options);
  return s;
}

struct Entry {
  std::string name;
  std::string what;
  std::function<std::vector<uint8_t>(const Harness& probe)> build;
  std::function<void(Harness& h)> check;
};
void PrintTo(const Entry& e, std::ostream* os) { *os << e.name; }

// Segments the stack sent to conn c's peer while running the input.
std::vector<SentSegment> SentTo(const Harness& h, int c) {
  std::vector<SentSegment> v;
  for (const SentSegment& s : h.sent()) {
    if (s.dst == h.conn(c).tuple.remote.addr && s.dst_port == h.conn(c).tuple.remote.port) {
      v.push_back(s);
    }
  }
  return v;
}

TcpState StateOf(Harness& h, int c) {
  auto info = h.stack().Info(h.conn(c).sock);
  return info.ok() ? info.value().state : TcpState::kClosed;
}

std::vector<Entry> Entries() {
  std::vector<Entry> e;
  const uint8_t kAddrPortsTcp = fix::kAddresses | fix::kPorts | fix::kTcpChecksum;

  // ---- IPv4 header ----
  for (const uint8_t ihl : {uint8_t{0}, uint8_t{4}}) {
    e.push_back({"ip_ihl_" + std::to_string(ihl), "IHL below 5",
                 [=](const Harness&) {
                   Bytes f = TcpFrame(flag::kAck);
                   Put8(f, 0, static_cast<uint8_t>(0x40 | ihl));
                   return InputBuilder().RawFixed(kAddrPortsTcp, 0, f).bytes();
                 },
                 [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kBadIpHeaderLen), 1u); }});
  }
  e.push_back({"ip_total_len_above_frame", "IP total length above the frame",
               [](const Harness&) {
                 Bytes f = TcpFrame(flag::kAck);
                 Put16(f, 2, static_cast<uint16_t>(f.size() + 100));
                 return InputBuilder().RawFixed(kAddrPortsTcp | fix::kIpChecksum, 0, f).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kBadIpTotalLen), 1u); }});
  e.push_back({"ip_total_len_below_header", "IP total length below the header length",
               [](const Harness&) {
                 Bytes f = TcpFrame(flag::kAck);
                 Put16(f, 2, 19);
                 return InputBuilder().RawFixed(fix::kAddresses | fix::kIpChecksum, 0, f).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kBadIpTotalLen), 1u); }});
  e.push_back({"ip_total_len_cuts_tcp_header",
               "IP total length below the frame, cutting the TCP header short",
               [](const Harness&) {
                 Bytes f = TcpFrame(flag::kAck);
                 Put16(f, 2, 30);
                 return InputBuilder().RawFixed(fix::kAddresses | fix::kIpChecksum, 0, f).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kTruncated), 1u); }});
  e.push_back({"ip_total_len_below_frame_padding",
               "IP total length below the frame: the rest is link padding, ignored (RFC 791)",
               [](const Harness& probe) {
                 // An in-sequence pure ACK on conn 0 followed by 20 bytes of padding.
                 Bytes f = TcpFrame(flag::kAck, 20);
                 Put16(f, 2, 40);
                 Put32(f, 24, probe.conn(0).peer_nxt.raw());
                 Put32(f, 28, probe.conn(0).stack_nxt.raw());
                 return InputBuilder()
                     .RawFixed(kAddrPortsTcp | fix::kIpChecksum, 0, f)
                     .bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(h.counters().tcp_segments_in - h.baseline().tcp_segments_in, 1u);
                 EXPECT_EQ(h.counters().total_drops(), h.baseline().total_drops());
                 EXPECT_EQ(StateOf(h, 0), TcpState::kEstablished);
               }});

  // ---- TCP header ----
  for (const uint8_t doff : {uint8_t{0}, uint8_t{4}}) {
    e.push_back({"tcp_doff_" + std::to_string(doff), "TCP data offset below 5",
                 [=](const Harness&) {
                   Bytes f = TcpFrame(flag::kAck, 8);
                   Put8(f, 32, static_cast<uint8_t>(doff << 4));
                   return InputBuilder().RawFixed(kAddrPortsTcp | fix::kIpChecksum, 0, f).bytes();
                 },
                 [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kBadTcpHeaderLen), 1u); }});
  }
  e.push_back({"tcp_doff_past_end", "TCP data offset past the end of the segment",
               [](const Harness&) {
                 Bytes f = TcpFrame(flag::kAck, 8);  // 28 bytes of TCP, offset says 60
                 Put8(f, 32, 15 << 4);
                 return InputBuilder().RawFixed(kAddrPortsTcp | fix::kIpChecksum, 0, f).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kBadTcpHeaderLen), 1u); }});
  const std::pair<const char*, std::vector<uint8_t>> bad_options[] = {
      {"tcp_option_len_0", {2, 0, 0, 0}},
      {"tcp_option_len_1", {8, 1, 0, 0}},
      {"tcp_option_len_past_end", {1, 1, 8, 10}},
      {"tcp_option_len_past_end_last_byte", {1, 1, 1, 3}},  // kind with no room for a length
  };
  for (const auto& [name, opts] : bad_options) {
    e.push_back({name, "TCP option length 0, 1 or past the end",
                 [opts = opts](const Harness&) {
                   SegmentSpec s;
                   s.conn = 0;
                   s.mode = mode::kInSequence;
                   s.options = opts;
                   s.payload_len = 10;
                   return InputBuilder().Segment(s).bytes();
                 },
                 [](Harness& h) {
                   EXPECT_EQ(Delta(h, Drop::kBadTcpOption), 1u);
                   auto info = h.stack().Info(h.conn(0).sock);
                   ASSERT_TRUE(info.ok());
                   EXPECT_EQ(info.value().readable_bytes, 0u) << "the segment's data was taken";
                 }});
  }

  // ---- Options in the handshake ----
  for (const uint8_t ws : {uint8_t{15}, uint8_t{255}}) {
    e.push_back({"synack_window_scale_" + std::to_string(ws),
                 "window scale above 14: used as 14 (RFC 7323 2.3)",
                 [=](const Harness&) {
                   return InputBuilder()
                       .Segment(SynAck({2, 4, 0x05, 0xb4, 1, 3, 3, ws}))
                       .bytes();
                 },
                 [](Harness& h) {
                   auto info = h.stack().Info(h.conn(2).sock);
                   ASSERT_TRUE(info.ok());
                   EXPECT_EQ(info.value().state, TcpState::kEstablished);
                   EXPECT_EQ(info.value().snd_wscale, 14);
                 }});
  }
  for (const uint8_t mss : {uint8_t{0}, uint8_t{1}}) {
    e.push_back({"synack_mss_" + std::to_string(mss),
                 "MSS 0 or 1: clamped so that segments carry at least 48 bytes",
                 [=](const Harness&) {
                   return InputBuilder()
                       .Segment(SynAck({2, 4, 0, mss}))
                       .Socket(Call::kSend, 2, 2000)
                       .Poll()
                       .bytes();
                 },
                 [](Harness& h) {
                   auto info = h.stack().Info(h.conn(2).sock);
                   ASSERT_TRUE(info.ok());
                   EXPECT_GE(info.value().mss, 48);
                   size_t data_segments = 0;
                   for (const SentSegment& s : SentTo(h, 2)) {
                     if (s.payload_len == 0) continue;
                     ++data_segments;
                     EXPECT_GE(s.payload_len, 48u);
                   }
                   EXPECT_GT(data_segments, 0u);
                   EXPECT_LE(data_segments, 2000u / 48 + 1 + 64) << "retransmissions included";
                 }});
  }
  e.push_back({"synack_wrong_ack", "a SYN-ACK with a wrong ack: RST with seq = SEG.ACK, stay",
               [](const Harness&) {
                 return InputBuilder().Segment(SynAck({2, 4, 0x05, 0xb4}, 5)).bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(Delta(h, Drop::kBadAck), 1u);
                 const std::vector<SentSegment> out = SentTo(h, 2);
                 ASSERT_FALSE(out.empty());
                 EXPECT_EQ(out[0].flags, flag::kRst);
                 EXPECT_EQ(out[0].seq, h.conn(2).stack_iss + 1 + 5);
               }});

  // ---- Urgent pointer ----
  e.push_back({"urgent_pointer_past_segment",
               "URG with the urgent pointer past the segment: the data is delivered in line",
               [](const Harness&) {
                 SegmentSpec s;
                 s.conn = 0;
                 s.flags = flag::kAck | flag::kUrg | flag::kPsh;
                 s.mode = mode::kInSequence | mode::kUrgentMax;
                 s.payload_len = 10;
                 return InputBuilder().Segment(s).bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(h.counters().total_drops(), h.baseline().total_drops());
                 auto info = h.stack().Info(h.conn(0).sock);
                 ASSERT_TRUE(info.ok());
                 EXPECT_EQ(info.value().readable_bytes, 10u);
               }});

  // ---- SACK blocks on conn 1, whose ISN is at or above 2^31 ----
  struct SackCase {
    const char* name;
    std::function<std::pair<uint32_t, uint32_t>(SeqNum una, SeqNum nxt)> block;
  };
  const SackCase sack_cases[] = {
      {"sack_wraps", [](SeqNum una, SeqNum) { return std::pair{(una + 0x80000000u).raw(), (una - 1).raw()}; }},
      {"sack_above_snd_nxt", [](SeqNum, SeqNum nxt) { return std::pair{(nxt + 1000).raw(), (nxt + 3000).raw()}; }},
      {"sack_empty_block", [](SeqNum una, SeqNum) { return std::pair{(una + 100).raw(), (una + 100).raw()}; }},
      {"sack_whole_space", [](SeqNum una, SeqNum) { return std::pair{(una + 100).raw(), (una + 99).raw()}; }},
      {"sack_below_snd_una", [](SeqNum una, SeqNum) { return std::pair{(una - 5000).raw(), (una - 1000).raw()}; }},
  };
  for (const SackCase& sc : sack_cases) {
    e.push_back({sc.name, "SACK blocks that wrap or lie outside SND.UNA..SND.NXT, ISN >= 2^31",
                 [block = sc.block](const Harness& probe) {
                   const SeqNum una = probe.conn(1).stack_nxt;  // nothing unacked at the start
                   const SeqNum nxt = una + 4000;
                   const auto [l, r] = block(una, nxt);
                   std::vector<uint8_t> opts = {1, 1, 5, 10};
                   for (uint8_t x : Be32(l)) opts.push_back(x);
                   for (uint8_t x : Be32(r)) opts.push_back(x);
                   InputBuilder b;
                   SendUnacked(b, 1, 4000);
                   SegmentSpec dup;  // three duplicate ACKs carrying the block
                   dup.conn = 1;
                   dup.mode = mode::kInSequence;
                   dup.ack = static_cast<uint32_t>(-4000);
                   dup.window = 1024;
                   dup.options = opts;
                   for (int i = 0; i < 3; ++i) b.Segment(dup);
                   SegmentSpec full;  // then everything acknowledged
                   full.conn = 1;
                   full.mode = mode::kInSequence;
                   full.window = 1024;
                   b.Segment(full);
                   return b.bytes();
                 },
                 [](Harness& h) {
                   auto info = h.stack().Info(h.conn(1).sock);
                   ASSERT_TRUE(info.ok());
                   EXPECT_GE(h.conn(1).stack_iss.raw(), 0x80000000u);
                   EXPECT_EQ(info.value().state, TcpState::kEstablished);
                   EXPECT_EQ(info.value().unsent_bytes, 0u) << "the final ACK was not taken";
                   EXPECT_EQ(h.counters().tcp_resets_out, h.baseline().tcp_resets_out);
                 }});
  }

  // ---- LAND ----
  e.push_back({"land", "source equal to destination (LAND)",
               [](const Harness&) {
                 Bytes f = TcpFrame(flag::kSyn);
                 Put32(f, 12, Harness::kUs.value());
                 Put16(f, 20, 80);
                 return InputBuilder()
                     .RawFixed(fix::kIpChecksum | fix::kTcpChecksum, 0, f)
                     .bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(Delta(h, Drop::kLand), 1u);
                 for (const SentSegment& s : h.sent()) EXPECT_NE(s.dst, Harness::kUs);
               }});

  // ---- Fragments ----
  auto seg10 = [] {
    SegmentSpec s;
    s.conn = 0;
    s.mode = mode::kInSequence;
    s.flags = flag::kAck | flag::kPsh;
    s.payload_len = 100;
    return s;
  };
  e.push_back({"frag_overlap", "overlapping fragments: the datagram is discarded",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{0, 24, true}, {16, 200, false}};
                 return InputBuilder().Fragments(seg10(), f).bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(Delta(h, Drop::kFragmentOverlap), 1u);
                 EXPECT_EQ(h.counters().ip_reassembled, h.baseline().ip_reassembled);
               }});
  e.push_back({"frag_teardrop", "a fragment inside an earlier one (teardrop)",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{0, 48, true}, {8, 8, true}, {48, 200, false}};
                 return InputBuilder().Fragments(seg10(), f).bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(Delta(h, Drop::kFragmentOverlap), 1u);
                 EXPECT_EQ(h.counters().ip_reassembled, h.baseline().ip_reassembled);
               }});
  e.push_back({"frag_tiny", "a tiny non-final fragment (4 bytes)",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{0, 4, true}, {8, 200, false}};
                 return InputBuilder().Fragments(seg10(), f).bytes();
               },
               [](Harness& h) {
                 EXPECT_GE(Delta(h, Drop::kFragmentBad), 1u);
                 EXPECT_EQ(h.counters().ip_reassembled, h.baseline().ip_reassembled);
               }});
  e.push_back({"frag_past_64k", "a fragment ending past 65535",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{65528, 100, false}};
                 return InputBuilder().Fragments(seg10(), f).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kFragmentBad), 1u); }});
  e.push_back({"frag_incomplete_times_out", "a datagram that never completes expires",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{0, 24, true}};
                 return InputBuilder().Fragments(seg10(), f).Advance(31'000'000).bytes();
               },
               [](Harness& h) { EXPECT_EQ(Delta(h, Drop::kFragmentTimeout), 1u); }});
  e.push_back({"frag_in_order_ok", "control: two good fragments reassemble and deliver data",
               [=](const Harness&) {
                 const InputBuilder::Frag f[] = {{0, 48, true}, {48, 84, false}};
                 return InputBuilder().Fragments(seg10(), f).bytes();
               },
               [](Harness& h) {
                 EXPECT_EQ(h.counters().ip_reassembled - h.baseline().ip_reassembled, 1u);
                 auto info = h.stack().Info(h.conn(0).sock);
                 ASSERT_TRUE(info.ok());
                 EXPECT_EQ(info.value().readable_bytes, 100u);
               }});
  return e;
}

std::vector<uint8_t> ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(FuzzFixture, ReachesTheStatesItPromises) {
  Harness h;
  EXPECT_TRUE(h.fixture_ok());
  EXPECT_GE(h.conn(1).stack_iss.raw(), 0x80000000u);
  EXPECT_EQ(h.counters().total_drops(), 0u);
}

class CorpusEntry : public testing::TestWithParam<Entry> {};

TEST_P(CorpusEntry, DroppedAndCountedOrHandledAsTheRfcSays) {
  const Entry& entry = GetParam();
  const Harness probe;
  const std::vector<uint8_t> built = entry.build(probe);
  const std::filesystem::path path = CorpusDir() / entry.name;
  if (const char* u = std::getenv("SHAKE_UPDATE_CORPUS"); u != nullptr && *u == '1') {
    std::filesystem::create_directories(CorpusDir());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(built.data()), static_cast<std::streamsize>(built.size()));
  }
  const std::vector<uint8_t> file = ReadFile(path);
  ASSERT_FALSE(file.empty()) << path << " is missing; run with SHAKE_UPDATE_CORPUS=1";
  EXPECT_EQ(file, built) << path << " is out of date; run with SHAKE_UPDATE_CORPUS=1";
  Harness h;
  ASSERT_TRUE(h.fixture_ok());
  h.Run(file);
  SCOPED_TRACE(entry.what);
  entry.check(h);
  if (HasFailure()) {
    std::string drops;
    for (size_t i = 1; i < h.counters().drops.size(); ++i) {
      const uint64_t d = h.counters().drops[i] - h.baseline().drops[i];
      if (d == 0) continue;
      drops += ' ';  // piece by piece: GCC 12 -O3 -Wrestrict misfires on "..." + std::string
      drops += DropName(static_cast<Drop>(i));
      drops += '=';
      drops += std::to_string(d);
    }
    ADD_FAILURE() << "drops counted while running the input:" << drops;
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, CorpusEntry, testing::ValuesIn(Entries()),
                         [](const testing::TestParamInfo<Entry>& i) { return i.param.name; });

// Every file in the corpus directory, named or not, runs to the end.
TEST(Corpus, EveryFileReplaysWithoutCrashing) {
  size_t n = 0;
  for (const auto& f : std::filesystem::directory_iterator(CorpusDir())) {
    if (!f.is_regular_file()) continue;
    Harness h;
    h.Run(ReadFile(f.path()));
    ++n;
  }
  EXPECT_GE(n, Entries().size());
}

}  // namespace
}  // namespace shake::fuzz
