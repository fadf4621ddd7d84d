#include "shim/launcher/trace/render.h"

#include <cstdio>
#include <initializer_list>
#include <string_view>

#include "stack/wire/tcp.h"

namespace shake::ladder {
namespace {

namespace f = wire::tcpflag;

bool Has(uint8_t flags, uint8_t flag) { return (flags & flag) != 0; }

// ---- text geometry (columns, from 0) --------------------------------------------------------
constexpr int kTimeW = 7;     // 0..6
constexpr int kStateW = 13;   // left state 8..20, right state 66..78
constexpr int kLeftBar = 22;
constexpr int kRightBar = 64;
constexpr int kFieldL = kLeftBar + 1;   // 23
constexpr int kFieldR = kRightBar - 1;  // 63
constexpr int kWidth = 79;
constexpr size_t kLabelMax = 37;   // 25..61
constexpr size_t kDetailMax = 37;  // 25..61
constexpr int kDetailCol = 25;

struct Glyphs {
  const char* bar;
  const char* bar_out_l;  // the sender's bar, arrow leaving to the right
  const char* bar_out_r;
  const char* line;
  const char* head_r;
  const char* head_l;
  const char* lost;
  const char* arrow;      // in words: "TIME-WAIT -> CLOSED"
  const char* ne;         // "not equal"
  const char* both;       // between the endpoints in the heading
};
constexpr Glyphs kUtf8{"│", "├", "┤", "─", "▶", "◀", "✕", "→", "≠", "⇄"};
constexpr Glyphs kAscii{"|", "|", "|", "-", ">", "<", "x", "->", "!=", "<->"};

// A line of single-width cells, each holding one UTF-8 character.
class Line {
 public:
  Line() : cells_(kWidth, " ") {}
  void Put(int col, const std::string& s) {
    for (size_t i = 0; i < s.size() && col < kWidth;) {
      size_t n = 1;
      const auto c = static_cast<unsigned char>(s[i]);
      if (c >= 0xf0) n = 4;
      else if (c >= 0xe0) n = 3;
      else if (c >= 0xc0) n = 2;
      if (col >= 0) cells_[static_cast<size_t>(col)] = s.substr(i, n);
      ++col;
      i += n;
    }
  }
  void PutRight(int last_col, const std::string& s) { Put(last_col - Width(s) + 1, s); }
  std::string str() const {
    std::string out;
    for (const auto& c : cells_) out += c;
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
  }
  static int Width(const std::string& s) {
    int w = 0;
    for (unsigned char c : s) {
      if ((c & 0xc0) != 0x80) ++w;
    }
    return w;
  }

 private:
  std::vector<std::string> cells_;
};

std::string Num(uint64_t v) { return std::to_string(v); }

// Concatenates pieces by appending: GCC 12 at -O3 misfires -Wrestrict on "literal" + std::string.
std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s.append(p);
  return s;
}

std::string TimeText(int64_t ns) {
  const double s = static_cast<double>(ns) / 1e9;
  char buf[32];
  if (s < 1000) snprintf(buf, sizeof buf, "%.3f", s);
  else if (s < 100000) snprintf(buf, sizeof buf, "%.1f", s);
  else snprintf(buf, sizeof buf, "%.0f", s);
  return buf;
}

// Joins `parts` with `sep` while the result stays within `max`; the rest is returned.
std::vector<std::string> Fill(std::vector<std::string> parts, const std::string& sep,
                              size_t max, std::string* out) {
  size_t i = 0;
  for (; i < parts.size(); ++i) {
    const size_t add = (out->empty() ? 0 : sep.size()) + static_cast<size_t>(Line::Width(parts[i]));
    if (!out->empty() && static_cast<size_t>(Line::Width(*out)) + add > max) break;
    if (!out->empty()) *out += sep;
    *out += parts[i];
  }
  return std::vector<std::string>(parts.begin() + static_cast<std::ptrdiff_t>(i), parts.end());
}

// Word-wraps detail items (each kept whole when it fits) into lines of at most `max`.
std::vector<std::string> Wrap(const std::vector<std::string>& items, size_t max) {
  std::vector<std::string> lines;
  std::string cur;
  for (const auto& it : items) {
    const size_t w = static_cast<size_t>(Line::Width(it));
    if (!cur.empty() && static_cast<size_t>(Line::Width(cur)) + 2 + w > max) {
      lines.push_back(cur);
      cur.clear();
    }
    if (!cur.empty()) cur += "  ";
    cur += it;
  }
  if (!cur.empty()) lines.push_back(cur);
  // An item longer than a line is cut at word boundaries.
  std::vector<std::string> out;
  for (auto& l : lines) {
    while (static_cast<size_t>(Line::Width(l)) > max) {
      size_t cut = l.rfind(' ', max);
      if (cut == std::string::npos || cut == 0) cut = max;
      out.push_back(l.substr(0, cut));
      l = l.substr(cut + (l[cut] == ' ' ? 1 : 0));
    }
    out.push_back(l);
  }
  return out;
}

}  // namespace

RowLines DescribeRow(const Connection& c, const Row& r, const RenderOptions& o) {
  const Glyphs& g = o.ascii ? kAscii : kUtf8;
  RowLines out;
  const int x = r.from, y = 1 - r.from;
  auto rel = [&](int side, SeqNum s) -> std::string {
    if (o.absolute) return Num(s.raw());
    return Num(static_cast<uint32_t>(s.raw() - c.base[side].raw()));
  };
  std::vector<std::string> details;
  if (r.kind == RowKind::kSegment) {
    const Segment& s = c.segs[r.seg];
    const WireSegment& w = s.wire;
    std::vector<std::string> parts;
    std::string head = FlagNames(w.flags) + " seq " + rel(x, w.seq);
    if (w.len > 0) head += Cat({":", rel(x, w.seq + w.len)});
    parts.push_back(head);
    if (Has(w.flags, f::kAck)) parts.push_back(Cat({"ack ", rel(y, w.ack)}));
    if (w.len > 0) parts.push_back(Cat({"(", Num(w.len), " B)"}));
    std::vector<std::string> rest = Fill(parts, " ", kLabelMax, &out.label);
    // Marks first: they are what the row is about.
    const Marks& m = s.marks;
    if (m.lost_certain) details.push_back("lost: the receiver's log never got it");
    else if (m.lost && s.seq_len() > 0) details.push_back("lost? sent again before it was ACKed");
    else if (m.lost) details.push_back("lost? the peer sent again what it acked");
    if (m.retransmit) details.push_back("retransmission");
    if (m.duplicate) details.push_back("duplicate (the network's copy)");
    if (m.dup_ack > 0) details.push_back("dup ACK " + Num(static_cast<uint64_t>(m.dup_ack)));
    if (m.challenge_ack) details.push_back("challenge ACK (RFC 5961)");
    if (m.rst_foreign) details.push_back("not at its sender's SND.NXT: spoofed or stale");
    if (m.rst_accepted) details.push_back("RST accepted");
    if (m.rst_not_exact) {
      details.push_back(std::string("RST not exact (seq ") + g.ne + " RCV.NXT): challenged");
    }
    if (m.syn_in_sync) details.push_back("SYN in a synchronized state: challenged");
    if (m.fin_again) details.push_back("FIN again: ACKed again");
    if (m.fin_out_of_order) details.push_back("FIN beyond RCV.NXT: held");
    for (auto& p : rest) details.push_back(p);
    if (Has(w.flags, f::kSyn)) {
      if (!o.absolute) details.push_back("isn " + Num(w.seq.raw()));
      details.push_back("win " + Num(w.window));
      if (!w.options_known) {
        details.push_back("options not recorded");
      } else {
        const wire::TcpOptions& op = w.options;
        std::vector<std::string> opts;
        if (op.mss) opts.push_back("mss " + Num(*op.mss));
        if (op.sack_permitted) opts.push_back("sackOK");
        if (op.timestamp) opts.push_back("TS");
        if (op.window_scale) opts.push_back("wscale " + Num(*op.window_scale));
        if (opts.empty()) opts.push_back("no options");
        std::string joined;
        for (const auto& p : opts) joined += (joined.empty() ? "" : " ") + p;
        details.push_back(joined);
      }
    } else {
      if (w.window == 0 && !Has(w.flags, f::kRst)) details.push_back("zero window");
      if (w.options_known && w.options.sack_count > 0) {
        std::string sack = "SACK";
        for (size_t i = 0; i < w.options.sack_count; ++i) {
          sack += Cat({" ", rel(y, w.options.sack[i].left), ":", rel(y, w.options.sack[i].right)});
        }
        details.push_back(sack);
      }
    }
  } else if (r.kind == RowKind::kBurst) {
    std::vector<std::string> parts = {Cat({"data seq ", rel(x, r.seq_lo), ":", rel(x, r.seq_hi)}),
                                      Cat({"(", Num(r.data_segments), " segments)"})};
    std::vector<std::string> rest = Fill(parts, " ", kLabelMax, &out.label);
    std::string size = Num(r.bytes) + " bytes";
    if (r.bytes >= 10 * 1024) {
      char buf[32];
      const double b = static_cast<double>(r.bytes);
      if (r.bytes >= 10 * 1024 * 1024) snprintf(buf, sizeof buf, " (%.1f MiB)", b / 1048576);
      else snprintf(buf, sizeof buf, " (%.1f KiB)", b / 1024);
      size += buf;
    }
    const std::string segs = rest.empty() ? "" : Num(r.data_segments) + " segments, ";
    details.push_back(Cat({segs, size, " in ", TimeText(r.end_ns - r.time_ns), " s"}));
    if (r.acks > 0) {
      details.push_back(Num(r.acks) + (r.acks == 1 ? " ACK" : " ACKs") + " back, up to ack " +
                        rel(x, r.last_ack));
    }
  } else if (r.kind == RowKind::kState) {
    out.label = std::string(StateName(r.before[x])) + " " + g.arrow + " " +
                std::string(StateName(r.state[x]));
  } else {
    out.label = r.note;
  }
  if (!r.note.empty() && r.kind != RowKind::kNote) details.push_back(r.note);
  out.details = Wrap(details, kDetailMax);
  return out;
}

std::vector<std::string> Heading(const Connection& c, size_t index, size_t total,
                                 const RenderOptions& o) {
  const Glyphs& g = o.ascii ? kAscii : kUtf8;
  std::vector<std::string> h;
  size_t segs = c.segs.size();
  const int64_t span = c.rows.empty() ? 0 : c.rows.back().time_ns - c.t0;
  h.push_back("Connection " + Num(index) + " of " + Num(total) + ": " + c.end[0].ToString() + " " +
              g.both + " " + c.end[1].ToString() + ", " + Num(segs) +
              (segs == 1 ? " segment" : " segments") + " in " + TimeText(span) + " s");
  const size_t ep_w = std::max(c.end[0].ToString().size(), c.end[1].ToString().size()) + 1;
  for (int s = 0; s < 2; ++s) {
    std::string ep = c.end[s].ToString();
    ep.resize(ep_w, ' ');
    const std::string lead = std::string(s == 0 ? "  left   " : "  right  ") + ep + " ";
    const std::string what = c.evented[s] ? "states from its log: " + c.who[s]
                                          : "states inferred from the segments";
    if (Line::Width(lead + what) <= kWidth) {
      h.push_back(lead + what);
    } else {
      h.push_back(lead + (c.evented[s] ? "states from its log:" : what));
      if (c.evented[s]) h.push_back(std::string(lead.size(), ' ') + c.who[s]);
    }
  }
  std::string rel = o.absolute ? "seq and ack absolute" : "seq and ack relative to each ISN";
  if (!o.absolute && (!c.base_is_isn[0] || !c.base_is_isn[1])) {
    rel = "seq and ack relative to each ISN, or without a SYN to the first seen";
  }
  if (!o.source.empty() && Line::Width(rel + "; " + o.source) + 2 <= kWidth) {
    h.push_back("  " + rel + "; " + o.source);
  } else {
    h.push_back("  " + rel);
    if (!o.source.empty()) h.push_back("  " + o.source);
  }
  return h;
}

std::string RenderText(const Connection& c, size_t index, size_t total, const RenderOptions& o) {
  const Glyphs& g = o.ascii ? kAscii : kUtf8;
  std::string out;
  for (const auto& l : Heading(c, index, total, o)) out += l + "\n";
  out += "\n";
  {
    Line l;
    l.PutRight(kTimeW - 1, "time");
    l.PutRight(8 + kStateW - 1, c.evented[0] ? "from its log" : "inferred");
    l.Put(kLeftBar, g.bar);
    l.Put(kFieldL + 1, c.end[0].ToString());
    l.PutRight(kFieldR - 1, c.end[1].ToString());
    l.Put(kRightBar, g.bar);
    l.Put(kRightBar + 2, c.evented[1] ? "from its log" : "inferred");
    out += l.str() + "\n";
  }
  for (const Row& r : c.rows) {
    const RowLines rl = DescribeRow(c, r, o);
    Line l;
    l.PutRight(kTimeW - 1, TimeText(r.time_ns - c.t0));
    l.PutRight(8 + kStateW - 1, std::string(StateName(r.state[0])));
    l.Put(kRightBar + 2, std::string(StateName(r.state[1])));
    l.Put(kLeftBar, g.bar);
    l.Put(kRightBar, g.bar);
    if (r.kind == RowKind::kSegment || r.kind == RowKind::kBurst) {
      const bool lost = r.kind == RowKind::kSegment && c.segs[r.seg].marks.lost;
      const int stop = lost ? (r.from == 0 ? kFieldL + 30 : kFieldL + 10) : -1;
      if (r.from == 0) {
        l.Put(kLeftBar, g.bar_out_l);
        for (int col = kFieldL; col < (lost ? stop : kFieldR); ++col) l.Put(col, g.line);
        l.Put(lost ? stop : kFieldR, lost ? g.lost : g.head_r);
        l.Put(kFieldL + 1, " " + rl.label + " ");
      } else {
        l.Put(kRightBar, g.bar_out_r);
        for (int col = (lost ? stop + 1 : kFieldL + 1); col <= kFieldR; ++col) l.Put(col, g.line);
        l.Put(lost ? stop : kFieldL, lost ? g.lost : g.head_l);
        l.PutRight(kFieldR - 1, " " + rl.label + " ");
      }
    } else if (r.from == 0) {
      l.Put(kFieldL + 1, rl.label);
    } else {
      l.PutRight(kFieldR - 1, rl.label);
    }
    out += l.str() + "\n";
    for (const auto& d : rl.details) {
      Line dl;
      dl.Put(kLeftBar, g.bar);
      dl.Put(kRightBar, g.bar);
      dl.Put(kDetailCol, d);
      out += dl.str() + "\n";
    }
  }
  for (const auto& n : c.notes) {
    for (const auto& l : Wrap({n}, kWidth - 2)) out += "  " + l + "\n";
  }
  return out;
}

std::string SummaryLine(const Connection& c, size_t index) {
  std::string s = Num(index) + ": " + c.end[0].ToString() + " -> " + c.end[1].ToString() + ", " +
                  Num(c.segs.size()) + " segments";
  if (!c.rows.empty()) {
    s += ", ends " + std::string(StateName(c.rows.back().state[0])) + " / " +
         std::string(StateName(c.rows.back().state[1]));
  }
  return s;
}

}  // namespace shake::ladder
