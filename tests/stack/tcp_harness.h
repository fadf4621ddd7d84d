// A scripted peer for exact-segment tests of one Stack in virtual time.
//
// The stack under test is 198.18.0.1/24 in LinkMode::kIp; the peer is 198.18.0.2. Tests build
// segments from a template (Seg), change one field, send it at a given time and look at exactly
// what came back, with sequence numbers relative to the stack's ISS and the peer's IRS.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <optional>
#include <string>
#include <vector>

#include "stack/stack.h"
#include "stack/wire/ipv4.h"
#include "stack/wire/tcp.h"
#include "tests/stack/tcp_frame.h"

namespace shake::testing {

namespace f = wire::tcpflag;

inline const Ipv4Addr kLocal(198, 18, 0, 1);
inline const Ipv4Addr kPeer(198, 18, 0, 2);
inline constexpr uint16_t kPeerPort = 40000;
inline constexpr uint16_t kServerPort = 80;

// A TCP segment as the tests see it.
struct Seg {
  uint16_t src_port = kPeerPort;
  uint16_t dst_port = kServerPort;
  uint8_t flags = 0;
  SeqNum seq;
  SeqNum ack;
  uint16_t window = 65535;
  wire::TcpOptions options;
  std::vector<std::byte> payload;

  std::string ToString() const {
    std::string s;
    if (flags & f::kSyn) s += "S";
    if (flags & f::kFin) s += "F";
    if (flags & f::kRst) s += "R";
    if (flags & f::kPsh) s += "P";
    if (flags & f::kAck) s += ".";
    s += " seq " + std::to_string(seq.raw()) + " ack " + std::to_string(ack.raw()) + " win " +
         std::to_string(window) + " len " + std::to_string(payload.size());
    return s;
  }
};

class CollectSink final : public FrameSink {
 public:
  std::span<std::byte> Acquire(size_t max_len) override {
    frames.emplace_back(max_len);
    return frames.back();
  }
  void Commit(size_t len) override { frames.back().resize(len); }
  std::vector<std::vector<std::byte>> frames;
};

class TcpHarness {
 public:
  explicit TcpHarness(StackConfig config = DefaultConfig())
      : stack_(config, std::pmr::new_delete_resource()) {}

  static StackConfig DefaultConfig() {
    StackConfig c;
    c.addr = kLocal;
    c.prefix_len = 24;
    c.mtu = 1500;
    for (size_t i = 0; i < c.isn_secret.size(); ++i) c.isn_secret[i] = static_cast<uint8_t>(i);
    c.tcp.send_buffer = 64 * 1024;
    c.tcp.recv_buffer = 64 * 1024;
    return c;
  }

  Stack& stack() { return stack_; }
  Instant now() const { return now_; }

  // Advances virtual time to `t` (running timers on the way) and returns what was sent.
  std::vector<Seg> AdvanceTo(Instant t) {
    std::vector<Seg> out;
    for (int guard = 0; guard < 100000; ++guard) {
      const Instant next = stack_.NextDeadline();
      if (next > t) break;
      now_ = next < now_ ? now_ : next;
      Collect(stack_.Poll(now_, sink_), out);
    }
    now_ = t;
    Collect(stack_.Poll(now_, sink_), out);
    return out;
  }
  std::vector<Seg> Advance(Duration d) { return AdvanceTo(now_ + d); }
  // Runs socket-call output without moving time.
  std::vector<Seg> Flush() { return AdvanceTo(now_); }

  // Delivers one segment from the peer and returns the stack's immediate answers (after a Poll
  // at the same instant, as a host loop would do).
  std::vector<Seg> Deliver(const Seg& s) {
    const std::vector<std::byte> frame = Build(s);
    stack_.Receive(now_, frame, sink_);
    std::vector<Seg> out;
    Collect(stack_.Poll(now_, sink_), out);
    return out;
  }

  // Raw frame input (for malformed packets).
  std::vector<Seg> DeliverFrame(std::span<const std::byte> frame) {
    stack_.Receive(now_, frame, sink_);
    std::vector<Seg> out;
    Collect(stack_.Poll(now_, sink_), out);
    return out;
  }

  static std::vector<std::byte> Build(const Seg& s, Ipv4Addr src = kPeer, Ipv4Addr dst = kLocal) {
    wire::TcpHeader h;
    h.src_port = s.src_port;
    h.dst_port = s.dst_port;
    h.seq = s.seq;
    h.ack = s.ack;
    h.flags = s.flags;
    h.window = s.window;
    h.options = s.options;
    return TcpFrame(src, dst, h, s.payload);
  }

 private:
  void Collect(Instant, std::vector<Seg>& out) {
    for (const auto& frame : sink_.frames) {
      wire::Ipv4Header ip;
      wire::Bytes payload;
      EXPECT_EQ(wire::ParseIpv4(frame, &ip, &payload), Drop::kNone);
      EXPECT_EQ(ip.src, kLocal);
      wire::TcpHeader h;
      wire::Bytes data;
      EXPECT_EQ(wire::ParseTcp(payload, ip.src, ip.dst, &h, &data), Drop::kNone)
          << "the stack sent a segment with a bad checksum or header";
      Seg s;
      s.src_port = h.src_port;
      s.dst_port = h.dst_port;
      s.flags = h.flags;
      s.seq = h.seq;
      s.ack = h.ack;
      s.window = h.window;
      s.options = h.options;
      s.payload.assign(data.begin(), data.end());
      out.push_back(std::move(s));
    }
    sink_.frames.clear();
  }

  Stack stack_;
  CollectSink sink_;
  Instant now_ = Instant::FromNanos(1'000'000'000);
};

inline std::vector<std::byte> Bytes(std::string_view s) {
  std::vector<std::byte> v(s.size());
  for (size_t i = 0; i < s.size(); ++i) v[i] = static_cast<std::byte>(s[i]);
  return v;
}

}  // namespace shake::testing
