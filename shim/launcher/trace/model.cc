#include "shim/launcher/trace/model.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "stack/tcp/state_inference.h"
#include "stack/wire/tcp.h"

namespace shake::ladder {

using infer::ExplainedByArrival;
using infer::ExplainedBySend;
using infer::Inference;
using infer::Outcome;

namespace {

namespace f = wire::tcpflag;

bool Has(uint8_t flags, uint8_t flag) { return (flags & flag) != 0; }

// How far the searches for a segment's answer look ahead, so that a capture of one direction
// only (where no answer ever comes) costs linear time, not quadratic.
constexpr size_t kLookAhead = 4096;

uint32_t SeqLenOf(const WireSegment& w) {
  return w.len + (Has(w.flags, f::kSyn) ? 1u : 0u) + (Has(w.flags, f::kFin) ? 1u : 0u);
}

// A connection's identity independent of direction.
struct Key {
  Endpoint a, b;  // a < b
  auto operator<=>(const Key&) const = default;
};
Key KeyOf(const Endpoint& x, const Endpoint& y) { return x < y ? Key{x, y} : Key{y, x}; }

// A directed tuple as the log writes it: the stack's end first.
using Tuple = std::pair<Endpoint, Endpoint>;

// A state change (or a drop) reported by a host's log, placed against the segments.
struct Placed {
  Endpoint host;
  bool is_drop = false;
  TcpState from = TcpState::kClosed;
  TcpState to = TcpState::kClosed;
  Drop drop = Drop::kNone;
  int64_t time_ns = 0;
};

// Everything known about one segment of the primary list beyond the wire.
struct PrimaryInfo {
  bool receiver_logged = false;  // the receiver's log has an "in" event for it
  bool log_retransmit = false;
  bool log_challenge = false;
  std::vector<Placed> before;    // applied before the row is drawn (caused by this send)
  std::vector<Placed> after;     // applied after it (caused by its arrival)
  std::vector<Placed> standalone;  // after it, as rows of their own
};

std::string Seconds(int64_t ns) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(ns) / 1e9);
  return buf;
}

}  // namespace

uint32_t Segment::seq_len() const { return SeqLenOf(wire); }

std::string FlagNames(uint8_t flags) {
  static constexpr std::pair<uint8_t, const char*> kOrder[] = {
      {f::kSyn, "SYN"}, {f::kFin, "FIN"}, {f::kRst, "RST"}, {f::kPsh, "PSH"},
      {f::kAck, "ACK"}, {f::kUrg, "URG"}, {f::kEce, "ECE"}, {f::kCwr, "CWR"}};
  std::string s;
  for (const auto& [bit, name] : kOrder) {
    if (!Has(flags, bit)) continue;
    if (!s.empty()) s += ' ';
    s += name;
  }
  return s.empty() ? "(no flags)" : s;
}

std::vector<Connection> Build(const Sources& src, const BuildOptions& options,
                              std::vector<std::string>* warnings) {
  const io::TraceLog* log = src.log;
  // ---- hosts that wrote a log, and the events' wall clock ----------------------------------
  std::map<Ipv4Addr, int64_t> offset;  // per stack address: real - mono of its first Hello
  if (log != nullptr) {
    for (const io::TraceHello& h : log->hellos) {
      offset.emplace(h.addr, h.real_ns - h.mono.nanos());
    }
  }
  auto wall = [&](size_t i) {
    const io::TraceHello* h = log->HelloFor(i);
    const int64_t t = log->events[i].event.time.nanos();
    if (h == nullptr) return t;
    return t + offset[h->addr];
  };

  // ---- the primary segment list ------------------------------------------------------------
  std::vector<WireSegment> prim;
  std::vector<int64_t> prim_event;  // the log event a segment came from, or -1
  if (src.capture != nullptr) {
    prim = src.capture->segments;
    prim_event.assign(prim.size(), -1);
  } else if (log != nullptr) {
    std::set<Ipv4Addr> logging;
    for (const auto& [addr, off] : offset) logging.insert(addr);
    std::vector<std::pair<int64_t, size_t>> order;
    for (size_t i = 0; i < log->events.size(); ++i) {
      const TraceEvent& e = log->events[i].event;
      if (e.kind == TraceEvent::Kind::kSegmentOut ||
          (e.kind == TraceEvent::Kind::kSegmentIn && !logging.count(e.tuple.remote.addr))) {
        order.emplace_back(wall(i), i);
      }
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    for (const auto& [t, i] : order) {
      const io::TraceRecord& r = log->events[i];
      const TraceEvent& e = r.event;
      WireSegment w;
      w.time_ns = t;
      const bool out = e.kind == TraceEvent::Kind::kSegmentOut;
      w.src = out ? e.tuple.local : e.tuple.remote;
      w.dst = out ? e.tuple.remote : e.tuple.local;
      w.flags = e.flags;
      w.seq = e.seq;
      w.ack = e.ack;
      w.len = e.len;
      w.window = e.window;
      w.options_known = (r.marks & io::trace_mark::kOptionsRecorded) != 0;
      if (w.options_known) {
        if (r.option_bits & io::trace_option::kMss) w.options.mss = r.mss;
        if (r.option_bits & io::trace_option::kWindowScale) w.options.window_scale = r.window_scale;
        w.options.sack_permitted = (r.option_bits & io::trace_option::kSackPermitted) != 0;
        if (r.option_bits & io::trace_option::kTimestamps) {
          w.options.timestamp = wire::TcpTimestamp{r.ts_val, r.ts_ecr};
        }
      }
      prim.push_back(w);
      prim_event.push_back(static_cast<int64_t>(i));
    }
  }
  std::vector<PrimaryInfo> info(prim.size());
  std::map<Key, std::vector<size_t>> by_key;
  for (size_t p = 0; p < prim.size(); ++p) by_key[KeyOf(prim[p].src, prim[p].dst)].push_back(p);

  // ---- the logs' own view, matched to the segments -----------------------------------------
  std::map<Tuple, std::vector<size_t>> log_tuples;  // (stack end, peer) -> its events
  std::map<Tuple, std::set<uint32_t>> tuple_pids;
  std::map<uint32_t, std::string> comm;
  if (log != nullptr) {
    for (const io::TraceHello& h : log->hellos) comm[h.pid] = h.comm;
    for (size_t i = 0; i < log->events.size(); ++i) {
      const TraceEvent& e = log->events[i].event;
      if (e.kind == TraceEvent::Kind::kDrop && e.tuple.remote.port == 0) continue;
      log_tuples[{e.tuple.local, e.tuple.remote}].push_back(i);
      tuple_pids[{e.tuple.local, e.tuple.remote}].insert(log->events[i].pid);
    }
  }
  size_t unmatched = 0;
  std::map<Key, std::vector<std::pair<size_t, Placed>>> lead_in;  // before any segment
  for (auto& [tuple, events] : log_tuples) {
    std::stable_sort(events.begin(), events.end(),
                     [&](size_t x, size_t y) { return wall(x) < wall(y); });
    const auto kit = by_key.find(KeyOf(tuple.first, tuple.second));
    static const std::vector<size_t> kNone;
    const std::vector<size_t>& cands = kit == by_key.end() ? kNone : kit->second;
    // Segment events -> primary index (greedy, in order).
    std::vector<int64_t> match(events.size(), -1);
    size_t next = 0;
    for (size_t k = 0; k < events.size(); ++k) {
      const io::TraceRecord& r = log->events[events[k]];
      const TraceEvent& e = r.event;
      const bool out = e.kind == TraceEvent::Kind::kSegmentOut;
      if (!out && e.kind != TraceEvent::Kind::kSegmentIn) continue;
      const Endpoint& sender = out ? e.tuple.local : e.tuple.remote;
      // Retransmissions repeat a segment exactly, so the clock decides among equals: a sent
      // segment is the first copy at or after the event, a received one the last copy at or
      // before it (with a millisecond of slack for two clocks); failing that, the first copy.
      const int64_t et = wall(events[k]);
      constexpr int64_t kSlack = 1'000'000;
      std::optional<size_t> first_copy, timed;
      for (size_t c = next; c < cands.size() && c < next + kLookAhead; ++c) {
        const WireSegment& w = prim[cands[c]];
        if (w.src != sender || w.seq != e.seq || w.ack != e.ack || w.flags != e.flags ||
            w.len != e.len) {
          continue;
        }
        if (!first_copy) first_copy = c;
        if (out) {
          if (w.time_ns >= et - kSlack) {
            timed = c;
            break;
          }
        } else if (w.time_ns <= et + kSlack) {
          timed = c;
        } else {
          break;
        }
      }
      if (const auto pick = timed ? timed : first_copy) {
        match[k] = static_cast<int64_t>(cands[*pick]);
        next = *pick + 1;
      }
      if (match[k] < 0) {
        ++unmatched;
        continue;
      }
      PrimaryInfo& pi = info[static_cast<size_t>(match[k])];
      if (out) {
        pi.log_retransmit |= (r.marks & io::trace_mark::kRetransmit) != 0;
        pi.log_challenge |= (r.marks & io::trace_mark::kChallengeAck) != 0;
      } else {
        pi.receiver_logged = true;
      }
    }
    // State changes and drops -> before/after/standalone of a matched segment.
    for (size_t k = 0; k < events.size(); ++k) {
      const TraceEvent& e = log->events[events[k]].event;
      if (e.kind != TraceEvent::Kind::kStateChange && e.kind != TraceEvent::Kind::kDrop) continue;
      Placed pl;
      pl.host = tuple.first;
      pl.is_drop = e.kind == TraceEvent::Kind::kDrop;
      pl.from = e.from;
      pl.to = e.to;
      pl.drop = e.drop;
      pl.time_ns = wall(events[k]);
      // The host's neighbouring segment events (skipping other state changes).
      int64_t prev = -1, nxt = -1;
      size_t prev_k = 0, next_k = 0;
      for (size_t j = k; j-- > 0;) {
        if (match[j] >= 0) {
          prev = match[j];
          prev_k = j;
          break;
        }
      }
      for (size_t j = k + 1; j < events.size(); ++j) {
        const TraceEvent& n = log->events[events[j]].event;
        if (n.kind == TraceEvent::Kind::kSegmentIn || n.kind == TraceEvent::Kind::kSegmentOut) {
          if (match[j] >= 0) {
            nxt = match[j];
            next_k = j;
          }
          break;
        }
      }
      constexpr int64_t kNear = 1'000'000;  // 1 ms: a socket call and the Poll that sends for it
      if (prev >= 0) {
        const TraceEvent& p = log->events[events[prev_k]].event;
        const bool near = pl.time_ns - wall(events[prev_k]) <= kNear;
        const bool arrival = p.kind == TraceEvent::Kind::kSegmentIn &&
                             (pl.is_drop || ExplainedByArrival(e.from, e.to, p.flags));
        const bool own_rst = p.kind == TraceEvent::Kind::kSegmentOut &&
                             Has(p.flags, f::kRst) && e.to == TcpState::kClosed;
        if (near && (arrival || own_rst)) {
          info[static_cast<size_t>(prev)].after.push_back(pl);
          continue;
        }
      }
      if (!pl.is_drop && nxt >= 0) {
        const TraceEvent& n = log->events[events[next_k]].event;
        if (n.kind == TraceEvent::Kind::kSegmentOut && ExplainedBySend(e.to, n.flags) &&
            wall(events[next_k]) - pl.time_ns <= kNear) {
          info[static_cast<size_t>(nxt)].before.push_back(pl);
          continue;
        }
      }
      if (prev >= 0) {
        info[static_cast<size_t>(prev)].standalone.push_back(pl);
        continue;
      }
      if (nxt >= 0) {
        info[static_cast<size_t>(nxt)].before.push_back(pl);  // before anything: initial state
        continue;
      }
      lead_in[KeyOf(tuple.first, tuple.second)].push_back({0, pl});
    }
  }
  if (unmatched > 0 && src.capture != nullptr) {
    warnings->push_back("trace log: " + std::to_string(unmatched) +
                        " segment events have no matching segment in the capture (captured "
                        "elsewhere, or cut short?); their states are placed by the others");
  }

  // ---- connections: one per key and incarnation -------------------------------------------
  struct Incarnation {
    std::vector<size_t> prims;
  };
  std::vector<std::pair<size_t, Incarnation>> incs;  // (first primary index, ...)
  for (const auto& [key, list] : by_key) {
    Incarnation cur;
    bool ended = false;  // a FIN or RST seen: a new SYN with another ISN starts anew
    std::map<Endpoint, SeqNum> isn;
    for (size_t p : list) {
      const WireSegment& w = prim[p];
      if (Has(w.flags, f::kSyn) && !Has(w.flags, f::kAck)) {
        auto it = isn.find(w.src);
        if (it != isn.end() && it->second != w.seq && ended) {
          incs.emplace_back(cur.prims.front(), std::move(cur));
          cur = Incarnation{};
          isn.clear();
          ended = false;
        }
      }
      if (Has(w.flags, f::kSyn)) isn.emplace(w.src, w.seq);
      if (Has(w.flags, f::kFin) || Has(w.flags, f::kRst)) ended = true;
      cur.prims.push_back(p);
    }
    if (!cur.prims.empty()) incs.emplace_back(cur.prims.front(), std::move(cur));
  }
  std::sort(incs.begin(), incs.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });

  std::vector<Connection> conns;
  for (auto& [first, inc] : incs) {
    Connection c;
    const std::vector<size_t>& ps = inc.prims;
    // Left: the sender of the first SYN (the active opener), else of the first segment.
    const WireSegment* opener = &prim[ps.front()];
    for (size_t p : ps) {
      if (Has(prim[p].flags, f::kSyn) && !Has(prim[p].flags, f::kAck)) {
        opener = &prim[p];
        break;
      }
      if (Has(prim[p].flags, f::kSyn)) {  // a SYN-ACK first: its receiver opened
        opener = nullptr;
        c.end = {prim[p].dst, prim[p].src};
        break;
      }
    }
    if (opener != nullptr) c.end = {opener->src, opener->dst};
    for (int s = 0; s < 2; ++s) {
      auto it = tuple_pids.find({c.end[s], c.end[1 - s]});
      if (it == tuple_pids.end()) continue;
      c.evented[s] = true;
      std::string pids;
      std::string name;
      for (uint32_t pid : it->second) {
        pids += (pids.empty() ? "" : ", ") + std::to_string(pid);
        if (name.empty()) name = comm[pid];
      }
      c.who[s] = std::string("libshake, pid") + (it->second.size() > 1 ? "s " : " ") + pids +
                 (name.empty() ? "" : " (" + name + ")");
    }
    c.t0 = prim[ps.front()].time_ns;
    for (size_t p : ps) {
      Segment s;
      s.wire = prim[p];
      s.from = prim[p].src == c.end[0] ? 0 : 1;
      c.segs.push_back(s);
    }
    const size_t n = c.segs.size();
    auto seg_of = [&](size_t i) -> const WireSegment& { return c.segs[i].wire; };

    // Relative sequence numbers: from each side's ISN, else its first sequence number.
    std::array<bool, 2> have_base{};
    for (size_t i = 0; i < n; ++i) {
      const int x = c.segs[i].from;
      if (Has(seg_of(i).flags, f::kSyn) && !c.base_is_isn[x]) {
        c.base[x] = seg_of(i).seq;
        c.base_is_isn[x] = true;
        have_base[x] = true;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const int x = c.segs[i].from;
      if (!have_base[x]) {
        c.base[x] = seg_of(i).seq;
        have_base[x] = true;
      }
    }

    // ---- retransmissions, duplicates, dup ACKs (stack/tcp/state_inference) -----------------
    {
      std::vector<infer::MarkView> views(n);
      for (size_t i = 0; i < n; ++i) {
        const WireSegment& w = c.segs[i].wire;
        std::optional<uint32_t> ts;
        if (w.options.timestamp) ts = w.options.timestamp->val;
        views[i] = {{c.segs[i].from, w.flags, w.seq, w.ack, w.len}, w.window, w.ip_id, ts,
                    info[ps[i]].log_retransmit};
      }
      const std::vector<infer::SegmentMarks> marks = infer::MarkRepeats(views);
      for (size_t i = 0; i < n; ++i) {
        c.segs[i].marks.duplicate |= marks[i].duplicate;
        c.segs[i].marks.retransmit |= marks[i].retransmit;
        if (marks[i].dup_ack != 0) c.segs[i].marks.dup_ack = marks[i].dup_ack;
      }
    }

    // ---- delivery ------------------------------------------------------------------------
    for (size_t i = 0; i < n; ++i) {
      Segment& s = c.segs[i];
      const int x = s.from, y = 1 - x;
      if (c.evented[y]) {
        // The receiver logged every segment it got.
        if (!info[ps[i]].receiver_logged) {
          s.marks.lost = true;
          s.marks.lost_certain = true;
        }
        continue;
      }
      if (s.marks.duplicate) continue;
      const uint32_t sl = s.seq_len();
      const WireSegment& w = s.wire;
      if (sl > 0 && !Has(w.flags, f::kRst)) {
        const SeqNum end = w.seq + sl;
        size_t j = i + 1;
        const size_t stop = std::min(n, i + 1 + kLookAhead);
        for (; j < stop; ++j) {
          const WireSegment& a = seg_of(j);
          if (c.segs[j].from == y && Has(a.flags, f::kAck) && a.ack >= end) break;
        }
        if (j == stop) continue;  // never acknowledged (as far as it looks): nothing to go by
        for (size_t k = i + 1; k < j; ++k) {
          const Segment& r = c.segs[k];
          if (r.from == x && r.marks.retransmit && r.wire.seq <= w.seq &&
              w.seq < r.wire.seq + r.seq_len()) {
            s.marks.lost = true;
            break;
          }
        }
      } else if (sl == 0 && Has(w.flags, f::kAck) && !Has(w.flags, f::kRst)) {
        // A lost ACK shows as the peer sending again what it acknowledged.
        for (size_t k = i + 1; k < n; ++k) {
          const Segment& r = c.segs[k];
          if (r.from == x) break;
          if (r.marks.retransmit && r.wire.seq + r.seq_len() <= w.ack) s.marks.lost = true;
          break;
        }
      }
    }

    // ---- when each segment reached the other end -----------------------------------------
    // A capture is taken at one place, so a segment's arrival at the far end is not seen. The
    // far end's own segments tell: their ACK covers the data it had, their TSecr echoes the last
    // timestamp it had (RFC 7323), and a bare SYN says it had nothing. A segment is taken to
    // arrive at once unless the far end's next segments show it had not arrived yet; then it
    // arrives just after the last of those (before the far end's first segment that shows it
    // had, if any). Segments of one sender arrive in the order sent.
    struct Slot {
      size_t row = 0;
      int phase = 1;  // 0: before the row's segment is sent, 1: after
      auto operator<=>(const Slot&) const = default;
    };
    auto evidence = [&](const Segment& sx, const Segment& ty) -> int {  // 1 yes, 0 no, -1 none
      const WireSegment& a = sx.wire;
      const WireSegment& t = ty.wire;
      if (Has(t.flags, f::kSyn) && !Has(t.flags, f::kAck)) return 0;
      if (!Has(t.flags, f::kAck)) return -1;
      int yes = 0, no = 0;
      if (sx.seq_len() > 0 && !Has(a.flags, f::kRst)) {
        (t.ack >= a.seq + sx.seq_len() ? yes : no)++;
      }
      if (a.options.timestamp && t.options.timestamp) {
        const int32_t d = static_cast<int32_t>(t.options.timestamp->ecr - a.options.timestamp->val);
        (d >= 0 ? yes : no)++;
      }
      if (no > 0) return 0;
      return yes > 0 ? 1 : -1;
    };
    std::vector<Slot> slot(n);
    std::array<bool, 2> have_prev{};
    std::array<Slot, 2> prev_slot{};
    for (size_t i = 0; i < n; ++i) {
      const Segment& sx = c.segs[i];
      const int x = sx.from;
      Slot sl{i, 1};
      std::optional<size_t> last_no;
      for (size_t j = i + 1; j < n && j <= i + kLookAhead; ++j) {
        if (c.segs[j].from == x) continue;
        const int e = evidence(sx, c.segs[j]);
        if (e < 0) continue;
        if (e == 1) break;
        last_no = j;
      }
      if (last_no) sl = Slot{*last_no + 1, 0};
      if (sx.marks.lost) continue;
      if (have_prev[x] && sl < prev_slot[x]) sl = prev_slot[x];
      slot[i] = sl;
      prev_slot[x] = sl;
      have_prev[x] = true;
    }
    std::vector<std::vector<size_t>> arrive_before(n + 1), arrive_after(n);
    for (size_t i = 0; i < n; ++i) {
      if (c.segs[i].marks.lost) continue;
      (slot[i].phase == 0 ? arrive_before[slot[i].row] : arrive_after[slot[i].row]).push_back(i);
    }

    // ---- inferred states, and the marks the receiver's reaction gives --------------------
    std::vector<std::array<TcpState, 2>> inferred(n);
    Inference inf;
    if (n > 0) {
      const WireSegment& w = seg_of(0);
      // The other end's first segment a bare SYN (it was opening too) or a RST: not listening.
      bool peer_closed = false;
      for (size_t j = 1; j < n; ++j) {
        if (c.segs[j].from == c.segs[0].from) continue;
        const uint8_t fj = seg_of(j).flags;
        peer_closed = (Has(fj, f::kSyn) && !Has(fj, f::kAck)) || Has(fj, f::kRst);
        break;
      }
      inf.Start({c.segs[0].from, w.flags, w.seq, w.ack, w.len}, peer_closed);
    }
    auto arrive = [&](size_t i) {
      Segment& s = c.segs[i];
      const Outcome o = inf.Received({s.from, s.wire.flags, s.wire.seq, s.wire.ack, s.wire.len});
      s.marks.rst_accepted = o.rst_accepted;
      s.marks.rst_not_exact = o.rst_not_exact;
      s.marks.syn_in_sync = o.syn_in_sync;
      s.marks.fin_again = o.fin_again;
      s.marks.fin_out_of_order = o.fin_out_of_order;
    };
    for (size_t i = 0; i < n; ++i) {
      for (size_t k : arrive_before[i]) arrive(k);
      Segment& s = c.segs[i];
      if (!inf.Sent({s.from, s.wire.flags, s.wire.seq, s.wire.ack, s.wire.len})) {
        s.marks.rst_foreign = true;
      }
      for (size_t k : arrive_after[i]) arrive(k);
      inferred[i] = {inf.state(0), inf.state(1)};
    }
    // Segments that arrive after the last one captured was sent.
    std::array<TcpState, 2> trailing{};
    if (n > 0) {
      for (size_t k : arrive_before[n]) arrive(k);
      trailing = {inf.state(0), inf.state(1)};
    }
    for (size_t i = 0; i < n; ++i) {
      Segment& s = c.segs[i];
      if (info[ps[i]].log_challenge) s.marks.challenge_ack = true;
      if (!s.marks.rst_not_exact && !s.marks.syn_in_sync) continue;
      for (size_t j = i + 1; j < n; ++j) {
        if (c.segs[j].from == s.from) continue;
        const WireSegment& a = seg_of(j);
        if (a.len == 0 && a.flags == f::kAck) c.segs[j].marks.challenge_ack = true;
        break;
      }
    }

    // ---- rows ----------------------------------------------------------------------------
    std::array<TcpState, 2> ev{};
    std::array<bool, 2> ev_init{};
    auto side_of = [&](const Endpoint& host) { return host == c.end[0] ? 0 : 1; };
    // An evented end starts in the state its first reported change leaves.
    {
      std::vector<Placed> all;
      for (const auto& [idx, pl] : lead_in[KeyOf(c.end[0], c.end[1])]) all.push_back(pl);
      for (size_t p : ps) {
        for (const auto* v : {&info[p].before, &info[p].after, &info[p].standalone}) {
          for (const Placed& pl : *v) all.push_back(pl);
        }
      }
      for (const Placed& pl : all) {
        const int s = side_of(pl.host);
        if (pl.is_drop || ev_init[s]) continue;
        ev[s] = pl.from;
        ev_init[s] = true;
      }
    }
    std::array<TcpState, 2> shown{};
    std::array<int64_t, 2> tw_since{-1, -1};
    const std::array<TcpState, 2> initial = [&] {
      std::array<TcpState, 2> st{};
      if (n == 0) return st;
      Inference start;
      const WireSegment& w = seg_of(0);
      start.Start({c.segs[0].from, w.flags, w.seq, w.ack, w.len});
      for (int s = 0; s < 2; ++s) st[s] = c.evented[s] ? ev[s] : start.state(s);
      return st;
    }();
    shown = initial;
    auto current = [&](size_t i) {
      std::array<TcpState, 2> st{};
      for (int s = 0; s < 2; ++s) st[s] = c.evented[s] ? ev[s] : inferred[i][s];
      return st;
    };
    // When an evented end's last change happened (its own clock), for TIME-WAIT's duration.
    std::array<int64_t, 2> ev_time{-1, -1};
    auto finish_row = [&](Row& r, const std::array<TcpState, 2>& st) {
      r.before = shown;
      for (int s = 0; s < 2; ++s) {
        r.state[s] = st[s];
        r.changed[s] = st[s] != shown[s];
        const int64_t t = c.evented[s] && ev_time[s] >= 0 ? ev_time[s] : r.time_ns;
        if (r.changed[s] && shown[s] == TcpState::kTimeWait && tw_since[s] >= 0) {
          const std::string line = "TIME-WAIT ended after " + Seconds(t - tw_since[s]);
          if (!r.note.empty()) r.note += "; ";
          r.note += line;
        }
        if (r.changed[s] && st[s] == TcpState::kTimeWait) tw_since[s] = t;
        shown[s] = st[s];
      }
      c.rows.push_back(r);
    };
    std::vector<Placed> pending;  // standalone changes waiting for their time to come
    auto flush_pending = [&](int64_t before_ns, size_t inferred_at) {
      std::stable_sort(pending.begin(), pending.end(),
                       [](const Placed& x, const Placed& y) { return x.time_ns < y.time_ns; });
      size_t k = 0;
      for (; k < pending.size() && pending[k].time_ns <= before_ns; ++k) {
        const Placed& pl = pending[k];
        const int s = side_of(pl.host);
        Row r;
        r.kind = pl.is_drop ? RowKind::kNote : RowKind::kState;
        r.time_ns = pl.time_ns;
        r.from = s;
        if (pl.is_drop) {
          r.note = "dropped by the stack: " + std::string(DropName(pl.drop));
        } else {
          ev[s] = pl.to;
          ev_time[s] = pl.time_ns;
        }
        finish_row(r, current(inferred_at));
      }
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(k));
    };
    for (size_t i = 0; i < n; ++i) {
      const PrimaryInfo& pi = info[ps[i]];
      flush_pending(seg_of(i).time_ns, i == 0 ? 0 : i - 1);
      std::string drops;
      for (const Placed& pl : pi.before) {
        if (pl.is_drop) continue;
        ev[side_of(pl.host)] = pl.to;
        ev_time[side_of(pl.host)] = pl.time_ns;
      }
      for (const Placed& pl : pi.after) {
        if (pl.is_drop) drops += (drops.empty() ? "" : "; ") + std::string("dropped by the stack: ") +
                                 std::string(DropName(pl.drop));
        else {
          ev[side_of(pl.host)] = pl.to;
          ev_time[side_of(pl.host)] = pl.time_ns;
        }
      }
      Row r;
      r.kind = RowKind::kSegment;
      r.time_ns = seg_of(i).time_ns;
      r.from = c.segs[i].from;
      r.seg = i;
      r.note = drops;
      finish_row(r, current(i));
      for (const Placed& pl : pi.standalone) pending.push_back(pl);
    }
    if (n > 0) {
      // The inferred ends' states once the last segments have arrived.
      const int64_t t_last = seg_of(n - 1).time_ns;
      flush_pending(t_last, n - 1);
      for (int s = 0; s < 2; ++s) {
        if (c.evented[s] || trailing[s] == shown[s]) continue;
        Row r;
        r.kind = RowKind::kState;
        r.time_ns = t_last;
        r.from = s;
        r.note = "inferred: the last segments arrive";
        std::array<TcpState, 2> st = shown;
        st[s] = trailing[s];
        finish_row(r, st);
      }
      inferred[n - 1] = trailing;  // what later rows (the log's timers) show for them
    }
    flush_pending(std::numeric_limits<int64_t>::max(), n == 0 ? 0 : n - 1);
    // Still in TIME-WAIT at the end.
    const int64_t t_end = c.rows.empty() ? c.t0 : c.rows.back().time_ns;
    for (int s = 0; s < 2; ++s) {
      if (shown[s] != TcpState::kTimeWait || tw_since[s] < 0) continue;
      const char* side = s == 0 ? "left" : "right";
      std::string note = "The ";
      note += side;
      note += " end is in TIME-WAIT at the end of the trace (for ";
      // The log's clock and the capture's differ by microseconds: the state change can carry a
      // time just after the last segment's, and the trace ends no earlier than it.
      note += Seconds(std::max(t_end, tw_since[s]) - tw_since[s]);
      note += " by then); TIME-WAIT lasts 2*MSL: 60 s on Linux and libshake.";
      c.notes.push_back(note);
    }

    // ---- folding -------------------------------------------------------------------------
    if (options.fold) {
      // A pause of more than two round trips ends a burst (the application paused, not the
      // sender's window). The round trip is the handshake's, seen from wherever the capture is
      // (SYN to SYN-ACK, or SYN-ACK to ACK); 50 ms when there was none.
      int64_t rtt = 0;
      for (size_t i = 0; i + 1 < n; ++i) {
        const WireSegment& a = seg_of(i);
        if (!Has(a.flags, f::kSyn)) continue;
        for (size_t j = i + 1; j < n; ++j) {
          if (c.segs[j].from == c.segs[i].from) continue;
          if (Has(seg_of(j).flags, f::kAck) && seg_of(j).ack == a.seq + 1) {
            rtt = std::max(rtt, seg_of(j).time_ns - a.time_ns);
          }
          break;
        }
      }
      if (rtt <= 0) rtt = 50'000'000;
      const int64_t max_gap = std::max<int64_t>(2 * rtt, 2'000'000);
      std::vector<Row> folded;
      auto plain = [&](const Segment& s) {
        return !s.marks.retransmit && !s.marks.duplicate && !s.marks.lost &&
               !s.marks.challenge_ack && s.marks.dup_ack == 0;
      };
      auto data_row = [&](const Row& r, int x) {
        if (r.kind != RowKind::kSegment || r.from != x || r.changed[0] || r.changed[1] ||
            !r.note.empty()) {
          return false;
        }
        const Segment& s = c.segs[r.seg];
        return s.wire.len > 0 && (s.wire.flags & ~(f::kAck | f::kPsh)) == 0 && plain(s);
      };
      auto ack_row = [&](const Row& r, int y) {
        if (r.kind != RowKind::kSegment || r.from != y || r.changed[0] || r.changed[1] ||
            !r.note.empty()) {
          return false;
        }
        const Segment& s = c.segs[r.seg];
        return s.wire.len == 0 && s.wire.flags == f::kAck && plain(s);
      };
      for (size_t i = 0; i < c.rows.size();) {
        const Row& r0 = c.rows[i];
        const int x = r0.from;
        if (!data_row(r0, x)) {
          folded.push_back(r0);
          ++i;
          continue;
        }
        size_t j = i, data = 0, last_data = i;
        for (; j < c.rows.size(); ++j) {
          if (data_row(c.rows[j], x)) {
            if (data > 0 && c.rows[j].time_ns - c.rows[last_data].time_ns > max_gap) break;
            ++data;
            last_data = j;
          } else if (!ack_row(c.rows[j], 1 - x)) {
            break;
          }
        }
        if (data < 2) {
          folded.push_back(r0);
          ++i;
          continue;
        }
        // The burst runs to its last data segment; the ACKs after that stay rows of their own.
        Row b;
        b.kind = RowKind::kBurst;
        b.time_ns = r0.time_ns;
        b.from = x;
        b.seg = r0.seg;
        bool first_data = true;
        for (size_t k = i; k <= last_data; ++k) {
          const Segment& s = c.segs[c.rows[k].seg];
          if (s.from == x) {
            ++b.data_segments;
            b.bytes += s.wire.len;
            const SeqNum hi = s.wire.seq + s.wire.len;
            if (first_data || s.wire.seq < b.seq_lo) b.seq_lo = s.wire.seq;
            if (first_data || hi > b.seq_hi) b.seq_hi = hi;
            first_data = false;
          } else {
            if (b.acks == 0 || s.wire.ack > b.last_ack) b.last_ack = s.wire.ack;
            ++b.acks;
          }
          b.end_ns = c.rows[k].time_ns;
        }
        b.before = r0.before;
        b.state = c.rows[last_data].state;
        b.changed = {false, false};
        folded.push_back(b);
        i = last_data + 1;
      }
      c.rows = std::move(folded);
    }
    conns.push_back(std::move(c));
  }
  return conns;
}

}  // namespace shake::ladder
