// The SVG ladder: the rows of the text ladder drawn with slanted, coloured arrows.
#include <cmath>
#include <cstdio>

#include "shim/launcher/trace/render.h"
#include "stack/wire/tcp.h"

namespace shake::ladder {
namespace {

namespace f = wire::tcpflag;

constexpr double kWidth = 820;
constexpr double kTimeX = 14;
constexpr double kLeftX = 250;
constexpr double kRightX = 610;
constexpr double kSlant = 10;      // an arrow drops this much from sender to receiver
constexpr double kRowH = 30;       // a row without details
constexpr double kDetailH = 13;
constexpr double kHeadLineH = 16;

std::string Esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string F(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f", v);
  std::string s = buf;
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

const char* Colour(const Connection& c, const Row& r) {
  if (r.kind == RowKind::kBurst) return "#37474f";
  if (r.kind != RowKind::kSegment) return "#6a1b9a";
  const Segment& s = c.segs[r.seg];
  const uint8_t fl = s.wire.flags;
  if (fl & f::kRst) return "#c62828";
  if (s.marks.retransmit || s.marks.duplicate || s.marks.lost || s.marks.challenge_ack ||
      s.marks.dup_ack > 0) {
    return "#e65100";
  }
  if (fl & f::kSyn) return "#2e7d32";
  if (fl & f::kFin) return "#1565c0";
  return "#37474f";
}

std::string TimeText(int64_t ns) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1e9);
  return buf;
}

}  // namespace

std::string RenderSvg(const std::vector<const Connection*>& conns,
                      const std::vector<size_t>& indices, size_t total, const RenderOptions& o) {
  RenderOptions text_opts = o;
  text_opts.ascii = false;
  std::string body;
  double y = 24;
  for (size_t ci = 0; ci < conns.size(); ++ci) {
    const Connection& c = *conns[ci];
    // Heading.
    const std::vector<std::string> head = Heading(c, indices[ci], total, text_opts);
    for (size_t i = 0; i < head.size(); ++i) {
      body += "<text x=\"" + F(kTimeX) + "\" y=\"" + F(y) + "\" class=\"" +
              (i == 0 ? "h1" : "h2") + "\">" + Esc(head[i]) + "</text>\n";
      y += kHeadLineH;
    }
    y += 10;
    // Column heads.
    body += "<text x=\"" + F(kTimeX) + "\" y=\"" + F(y) + "\" class=\"col\">time (s)</text>\n";
    body += "<text x=\"" + F(kLeftX) + "\" y=\"" + F(y) + "\" class=\"host\" text-anchor=\"middle\">" +
            Esc(c.end[0].ToString()) + "</text>\n";
    body += "<text x=\"" + F(kRightX) + "\" y=\"" + F(y) + "\" class=\"host\" text-anchor=\"middle\">" +
            Esc(c.end[1].ToString()) + "</text>\n";
    y += 14;
    body += "<text x=\"" + F(kLeftX - 8) + "\" y=\"" + F(y) + "\" class=\"col\" text-anchor=\"end\">" +
            (c.evented[0] ? "state (from its log)" : "state (inferred)") + "</text>\n";
    body += "<text x=\"" + F(kRightX + 8) + "\" y=\"" + F(y) + "\" class=\"col\">" +
            (c.evented[1] ? "state (from its log)" : "state (inferred)") + "</text>\n";
    y += 8;
    const double top = y;
    std::string rows;
    for (const Row& r : c.rows) {
      const RowLines rl = DescribeRow(c, r, text_opts);
      const double y0 = y + 16;  // the arrow starts here
      const double y1 = y0 + kSlant;
      const char* col = Colour(c, r);
      rows += "<text x=\"" + F(kTimeX) + "\" y=\"" + F(y1 + 4) + "\" class=\"t\">" +
              TimeText(r.time_ns - c.t0) + "</text>\n";
      for (int s = 0; s < 2; ++s) {
        const std::string st(StateName(r.state[s]));
        const bool bold = r.changed[s];
        if (s == 0) {
          rows += "<text x=\"" + F(kLeftX - 8) + "\" y=\"" + F(y1 + 4) + "\" text-anchor=\"end\" class=\"" +
                  (bold ? "sc" : "s") + "\">" + Esc(st) + "</text>\n";
        } else {
          rows += "<text x=\"" + F(kRightX + 8) + "\" y=\"" + F(y1 + 4) + "\" class=\"" +
                  (bold ? "sc" : "s") + "\">" + Esc(st) + "</text>\n";
        }
      }
      const double mid = (kLeftX + kRightX) / 2;
      if (r.kind == RowKind::kSegment || r.kind == RowKind::kBurst) {
        const bool lost = r.kind == RowKind::kSegment && c.segs[r.seg].marks.lost;
        const bool dashed = r.kind == RowKind::kSegment &&
                            (c.segs[r.seg].marks.retransmit || c.segs[r.seg].marks.duplicate);
        const double xs = r.from == 0 ? kLeftX : kRightX;
        double xe = r.from == 0 ? kRightX : kLeftX;
        double ye = y1;
        if (lost) {
          xe = xs + (xe - xs) * 0.72;
          ye = y0 + (y1 - y0) * 0.72;
        }
        const std::string width = r.kind == RowKind::kBurst ? "3" : "1.5";
        rows += "<line x1=\"" + F(xs) + "\" y1=\"" + F(y0) + "\" x2=\"" + F(xe) + "\" y2=\"" +
                F(ye) + "\" stroke=\"" + col + "\" stroke-width=\"" + width + "\"" +
                (dashed ? " stroke-dasharray=\"6,3\"" : "") + "/>\n";
        if (lost) {
          rows += "<path d=\"M" + F(xe - 5) + " " + F(ye - 5) + " L" + F(xe + 5) + " " + F(ye + 5) +
                  " M" + F(xe - 5) + " " + F(ye + 5) + " L" + F(xe + 5) + " " + F(ye - 5) +
                  "\" stroke=\"#c62828\" stroke-width=\"2\"/>\n";
        } else {
          // The arrowhead, along the line.
          const double dx = xe - xs, dy = ye - y0, len = std::sqrt(dx * dx + dy * dy);
          const double ux = dx / len, uy = dy / len;
          const double bx = xe - ux * 10, by = ye - uy * 10;
          rows += "<path d=\"M" + F(xe) + " " + F(ye) + " L" + F(bx - uy * 4) + " " +
                  F(by + ux * 4) + " L" + F(bx + uy * 4) + " " + F(by - ux * 4) +
                  " Z\" fill=\"" + col + "\"/>\n";
        }
        rows += "<text x=\"" + F(mid) + "\" y=\"" + F(y0 - 1) +
                "\" text-anchor=\"middle\" class=\"l\" fill=\"" + col + "\">" + Esc(rl.label) +
                "</text>\n";
      } else {
        rows += "<text x=\"" + F(r.from == 0 ? kLeftX + 10 : kRightX - 10) + "\" y=\"" + F(y1) +
                "\" text-anchor=\"" + (r.from == 0 ? "start" : "end") + "\" class=\"l\" fill=\"" +
                col + "\">" + Esc(rl.label) + "</text>\n";
      }
      double dy = y1 + 14;
      for (const auto& d : rl.details) {
        rows += "<text x=\"" + F(mid) + "\" y=\"" + F(dy) + "\" text-anchor=\"middle\" class=\"d\">" +
                Esc(d) + "</text>\n";
        dy += kDetailH;
      }
      y += kRowH + kDetailH * static_cast<double>(rl.details.size());
    }
    y += 8;
    body += "<line x1=\"" + F(kLeftX) + "\" y1=\"" + F(top) + "\" x2=\"" + F(kLeftX) + "\" y2=\"" +
            F(y) + "\" class=\"host-line\"/>\n";
    body += "<line x1=\"" + F(kRightX) + "\" y1=\"" + F(top) + "\" x2=\"" + F(kRightX) +
            "\" y2=\"" + F(y) + "\" class=\"host-line\"/>\n";
    body += rows;
    y += 8;
    for (const auto& n : c.notes) {
      body += "<text x=\"" + F(kTimeX) + "\" y=\"" + F(y + 10) + "\" class=\"d\">" + Esc(n) +
              "</text>\n";
      y += 14;
    }
    y += 30;
  }
  std::string svg;
  svg += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" xml:space=\"preserve\" width=\"" + F(kWidth) + "\" height=\"" + F(y) +
         "\" viewBox=\"0 0 " + F(kWidth) + " " + F(y) + "\">\n";
  svg += "<title>TCP ladder drawn by shake trace</title>\n";
  svg +=
      "<style>\n"
      "text { font-family: 'DejaVu Sans Mono', 'Liberation Mono', monospace; }\n"
      ".h1 { font-size: 13px; font-weight: bold; fill: #212121; }\n"
      ".h2 { font-size: 11px; fill: #424242; }\n"
      ".col { font-size: 11px; fill: #616161; font-style: italic; }\n"
      ".host { font-size: 12px; font-weight: bold; fill: #212121; }\n"
      ".t { font-size: 11px; fill: #757575; }\n"
      ".s { font-size: 11px; fill: #424242; }\n"
      ".sc { font-size: 11px; fill: #000000; font-weight: bold; }\n"
      ".l { font-size: 11.5px; }\n"
      ".d { font-size: 10px; fill: #616161; }\n"
      ".host-line { stroke: #9e9e9e; stroke-width: 2; }\n"
      "</style>\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  svg += body;
  svg += "</svg>\n";
  return svg;
}

}  // namespace shake::ladder
