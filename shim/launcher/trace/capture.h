// Reads the TCP/IPv4 segments out of a capture file for `shake trace --pcap FILE`.
//
//   ladder::Capture cap;
//   if (!ladder::ReadCapture(path, &cap, &error)) { print error; }
//   for (const WireSegment& s : cap.segments) ...
//
// Accepted: classic pcap (microsecond or nanosecond timestamps, either byte order) and pcapng
// (section, interface and enhanced/simple/obsolete packet blocks; several interfaces), with the
// link types Ethernet (1, also with 802.1Q/802.1ad tags), raw IPv4 (101, 228, and the 12/14 some
// systems write), Linux cooked SLL (113) and SLL2 (276), and BSD loopback (0). Everything else is
// counted and skipped: non-IPv4, non-TCP, fragments after the first, and frames too short for an
// IPv4 and a TCP header. Checksums are not verified (a capture on the sending host holds
// offloaded, not yet computed checksums). A frame cut by the snapshot length still counts with
// its full payload length from the IPv4 header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "stack/base/addr.h"
#include "stack/base/seqnum.h"
#include "stack/wire/tcp.h"

namespace shake::ladder {

// One TCP segment, from a capture or from a trace log.
struct WireSegment {
  int64_t time_ns = 0;  // wall clock (capture) or the log's clock converted to wall time
  Endpoint src;
  Endpoint dst;
  uint8_t flags = 0;
  SeqNum seq;
  SeqNum ack;
  uint32_t len = 0;  // payload bytes
  uint32_t window = 0;
  bool options_known = true;  // false for log events that did not record options
  wire::TcpOptions options;
  int32_t ip_id = -1;         // -1 when unknown (trace logs)
};

struct Capture {
  std::string format;  // "pcap", "pcap (ns)", "pcapng"
  std::vector<WireSegment> segments;
  uint64_t frames = 0;
  uint64_t skipped_not_ipv4 = 0;
  uint64_t skipped_not_tcp = 0;
  uint64_t skipped_malformed = 0;  // too short, bad header lengths, unknown link type
  std::vector<std::string> warnings;
};

// False with a one-line reason when the file cannot be read or is not a capture at all; a
// damaged tail is a warning and keeps what came before.
bool ReadCapture(const std::string& path, Capture* out, std::string* error);
bool ParseCapture(const std::byte* data, size_t size, Capture* out, std::string* error);

// Decodes one link-layer frame into `out`; false (and a count in `cap`) when it holds no
// TCP/IPv4 segment. Exposed for tests.
bool DecodeFrame(uint32_t linktype, const std::byte* frame, size_t caplen, int64_t time_ns,
                 Capture* cap, WireSegment* out);

}  // namespace shake::ladder
