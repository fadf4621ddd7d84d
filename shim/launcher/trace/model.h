// The ladder model behind `shake trace`: connections, their segments with marks, the state of
// both ends after every segment, and the rows a renderer draws (render.h).
//
//   ladder::Sources src{&capture, &log};            // either may be null, not both
//   std::vector<ladder::Connection> conns = ladder::Build(src, {}, &warnings);
//
// Where the segments come from: the capture when there is one (it has every option and the IP
// identification), otherwise the trace log's segment events (each segment once: the sender's
// "out" event, or the receiver's "in" event when the sender wrote no log).
// Where the states come from: a host that wrote a trace log reports its own state changes; they
// are placed by matching its segment events to the segments (same sender, seq, ack, flags and
// length, in order). Every other host's states are inferred (infer.h) and labeled so.
//
// Marks, per segment:
//   retransmission  its sequence space was sent before (or the stack's event says so)
//   duplicate       an exact copy of an earlier segment (same IP identification or timestamp):
//                   the network, not the sender, made it
//   dup ACK n       a pure ACK repeating the last ACK and window while data is outstanding
//   challenge ACK   a pure ACK answering a RST that was not exact, or a SYN, in a synchronized
//                   state (RFC 5961 3.2, 4.2)
//   lost            the receiver logged events and never got it; "lost?" when inferred: the
//                   sender sent its sequence space again before the peer acknowledged it (or, for
//                   an ACK, the peer retransmitted what it acknowledged)
// Folding: a run of two or more data segments one way with nothing marked and no state change,
// and the plain ACKs coming back between them, becomes one burst row.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/trace_log.h"
#include "shim/launcher/trace/capture.h"
#include "stack/stack.h"

namespace shake::ladder {

struct Marks {
  bool retransmit = false;
  bool duplicate = false;
  int dup_ack = 0;
  bool challenge_ack = false;
  bool lost = false;
  bool lost_certain = false;
  bool rst_accepted = false;
  bool rst_not_exact = false;
  bool rst_foreign = false;  // not at its sender's SND.NXT: spoofed or stale
  bool syn_in_sync = false;
  bool fin_again = false;
  bool fin_out_of_order = false;
};

struct Segment {
  WireSegment wire;
  int from = 0;  // 0: the left end sent it, 1: the right end
  Marks marks;
  uint32_t seq_len() const;  // data plus one for SYN and one for FIN
};

enum class RowKind : uint8_t {
  kSegment,  // one segment
  kBurst,    // folded data segments one way and the plain ACKs back
  kState,    // a state change that no segment explains (a timer: TIME-WAIT ending, ...)
  kNote,     // something the log said (a drop)
};

struct Row {
  RowKind kind = RowKind::kSegment;
  int64_t time_ns = 0;
  int from = 0;          // kSegment, kBurst: the sender; kState, kNote: the side concerned
  size_t seg = 0;        // kSegment: index into Connection::segs; kBurst: the first data segment
  // kBurst:
  size_t data_segments = 0;
  uint64_t bytes = 0;
  SeqNum seq_lo, seq_hi;  // sequence range of the data
  size_t acks = 0;        // plain ACKs folded in, from the other side
  SeqNum last_ack;        // the highest of them
  int64_t end_ns = 0;
  // Before and after the row:
  std::array<TcpState, 2> before{};
  std::array<TcpState, 2> state{};
  std::array<bool, 2> changed{};
  std::string note;       // kState, kNote
};

struct Connection {
  std::array<Endpoint, 2> end;      // [0] left (the active opener), [1] right
  std::array<bool, 2> evented{};    // states from that host's own trace log
  std::array<std::string, 2> who;   // for evented ends: "libshake, pid 12 (curl)"
  std::array<SeqNum, 2> base;       // relative sequence numbers count from here
  std::array<bool, 2> base_is_isn{};  // base is the ISN (a SYN was seen), else the first seq
  int64_t t0 = 0;                   // the first segment's time
  std::vector<Segment> segs;
  std::vector<Row> rows;
  std::vector<std::string> notes;   // printed under the ladder
};

struct Sources {
  const Capture* capture = nullptr;
  const io::TraceLog* log = nullptr;
};

struct BuildOptions {
  bool fold = true;
};

std::vector<Connection> Build(const Sources& src, const BuildOptions& options,
                              std::vector<std::string>* warnings);

// "SYN ACK", "FIN PSH ACK", ... in the order SYN FIN RST PSH ACK URG ECE CWR.
std::string FlagNames(uint8_t flags);

}  // namespace shake::ladder
