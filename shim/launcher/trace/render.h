// Draws the ladders of model.h: text for a terminal (at most 79 columns, UTF-8 box and arrow
// characters or plain ASCII) and SVG for documents.
//
//   std::string text = ladder::RenderText(conn, 1, conns.size(), opts);
//   std::string svg = ladder::RenderSvg(selected_conns, opts);
//
// Both draw the same rows with the same words (RowLines); SVG adds colour (SYN green, FIN blue,
// RST red, marked segments orange) and slants the arrows the way time runs.
#pragma once

#include <string>
#include <vector>

#include "shim/launcher/trace/model.h"

namespace shake::ladder {

struct RenderOptions {
  bool ascii = false;     // text: '|', '-', '>' instead of box drawing and arrows
  bool absolute = false;  // raw sequence and acknowledgment numbers everywhere
  std::string source;     // shown in the heading, e.g. "capture handshake.pcap"
};

// The words of one row: the arrow's label and the lines under it.
struct RowLines {
  std::string label;
  std::vector<std::string> details;
};
RowLines DescribeRow(const Connection& c, const Row& r, const RenderOptions& o);

// The heading lines of a connection (shared by both renderers).
std::vector<std::string> Heading(const Connection& c, size_t index, size_t total,
                                 const RenderOptions& o);

std::string RenderText(const Connection& c, size_t index, size_t total, const RenderOptions& o);
std::string RenderSvg(const std::vector<const Connection*>& conns,
                      const std::vector<size_t>& indices, size_t total, const RenderOptions& o);

// A one-line summary for `shake trace --list`.
std::string SummaryLine(const Connection& c, size_t index);

}  // namespace shake::ladder
