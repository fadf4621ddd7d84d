// An IPv4 frame carrying one TCP segment, as a peer would put it on the wire: both headers
// emitted by stack/wire and the TCP checksum filled in. For the tests and benchmarks that play
// the far end of a connection.
#pragma once

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "stack/base/addr.h"
#include "stack/wire/checksum.h"
#include "stack/wire/ipv4.h"
#include "stack/stack.h"
#include "stack/wire/tcp.h"

namespace shake::testing {

inline std::vector<std::byte> TcpFrame(Ipv4Addr src, Ipv4Addr dst, const wire::TcpHeader& h,
                                       std::span<const std::byte> payload = {}) {
  const size_t hlen = wire::TcpHeaderLen(h.options);
  std::vector<std::byte> frame(wire::kIpv4MinHeaderLen + hlen + payload.size());
  wire::Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(frame.size());
  ip.protocol = wire::kProtoTcp;
  ip.src = src;
  ip.dst = dst;
  wire::EmitIpv4(frame, ip);
  const std::span<std::byte> seg = std::span(frame).subspan(wire::kIpv4MinHeaderLen);
  wire::EmitTcpHeader(seg, h);
  std::copy(payload.begin(), payload.end(), seg.begin() + static_cast<std::ptrdiff_t>(hlen));
  wire::FillTcpChecksum(seg, src, dst);
  return frame;
}

// The first n bytes of 0, 1, ..., 255, 0, 1, ...: a payload (up to 64 KiB) whose every byte
// tells where it sits.
inline std::span<const std::byte> CountingBytes(size_t n) {
  static const std::vector<std::byte> bytes = [] {
    std::vector<std::byte> v(size_t{1} << 16);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::byte>(i);
    return v;
  }();
  return std::span(bytes).first(n);
}

// A FrameSink that counts the stack's frames and remembers the last TCP header among them (when
// `parse` is set): what a benchmark's far end needs to answer without a full harness.
class LastSegmentSink final : public FrameSink {
 public:
  std::span<std::byte> Acquire(size_t max_len) override {
    if (buf_.size() < max_len) buf_.resize(max_len);
    return {buf_.data(), max_len};
  }
  void Commit(size_t len) override {
    ++frames;
    if (!parse) return;
    wire::Ipv4Header ip;
    wire::Bytes payload;
    if (wire::ParseIpv4({buf_.data(), len}, &ip, &payload, false) != Drop::kNone) return;
    wire::TcpHeader h;
    wire::Bytes data;
    if (wire::ParseTcp(payload, ip.src, ip.dst, &h, &data, false) == Drop::kNone) last = h;
  }
  uint64_t frames = 0;
  bool parse = true;
  wire::TcpHeader last;

 private:
  std::vector<std::byte> buf_;
};

}  // namespace shake::testing
