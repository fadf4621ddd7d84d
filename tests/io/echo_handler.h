// EchoHandler: a tiny PacketHandler for engine and device tests that do not need the TCP stack.
// It answers ARP requests for its address (Ethernet mode) and ICMP echo requests, and counts
// what it saw.
#pragma once

#include <atomic>
#include <cstring>
#include <vector>

#include "io/engine.h"
#include "stack/wire/bytes.h"
#include "stack/wire/checksum.h"

namespace shake::testing {

class EchoHandler final : public io::PacketHandler {
 public:
  EchoHandler(LinkMode mode, Ipv4Addr addr, MacAddr mac = {})
      : mode_(mode), addr_(addr), mac_(mac) {}

  std::atomic<int> frames{0};
  std::atomic<int> echo_replies{0};
  std::atomic<int> arp_replies{0};
  std::atomic<int> own_frames{0};  // frames whose source MAC is ours: must stay 0
  std::atomic<int> polls{0};

  void Receive(Instant, std::span<const std::byte> frame, FrameSink& out, bool) override {
    ++frames;
    size_t l2 = 0;
    if (mode_ == LinkMode::kEthernet) {
      if (frame.size() < 14) return;
      if (std::memcmp(frame.data() + 6, mac_.b.data(), 6) == 0) ++own_frames;
      const uint16_t type = wire::Load16(frame, 12);
      if (type == 0x0806) return Arp(frame, out);
      if (type != 0x0800) return;
      l2 = 14;
    }
    const auto ip = frame.subspan(l2);
    if (ip.size() < 28 || (wire::Load8(ip, 0) >> 4) != 4) return;
    const size_t ihl = size_t{wire::Load8(ip, 0)} % 16 * 4;
    const size_t total = wire::Load16(ip, 2);
    if (wire::Load8(ip, 9) != 1 || wire::Load32(ip, 16) != addr_.value()) return;
    if (total > ip.size() || total < ihl + 8 || wire::Load8(ip, ihl) != 8) return;
    auto buf = out.Acquire(l2 + total);
    if (buf.size() < l2 + total) return;
    std::memcpy(buf.data(), frame.data(), l2 + total);
    if (l2) {
      std::memcpy(buf.data(), frame.data() + 6, 6);
      std::memcpy(buf.data() + 6, mac_.b.data(), 6);
    }
    auto rip = buf.subspan(l2, total);
    wire::Store32(rip, 16, wire::Load32(ip, 12));
    wire::Store32(rip, 12, addr_.value());
    wire::Store8(rip, 8, 64);
    wire::Store16(rip, 10, 0);
    wire::Store16(rip, 10, wire::InternetChecksum(rip.first(ihl)));
    auto icmp = rip.subspan(ihl);
    wire::Store8(icmp, 0, 0);  // echo reply
    wire::Store16(icmp, 2, 0);
    wire::Store16(icmp, 2, wire::InternetChecksum(icmp));
    out.Commit(l2 + total);
    ++echo_replies;
  }

  Instant Poll(Instant, FrameSink&) override {
    ++polls;
    return Instant::Never();
  }

 private:
  void Arp(std::span<const std::byte> frame, FrameSink& out) {
    if (frame.size() < 42) return;
    const auto arp = frame.subspan(14);
    if (wire::Load16(arp, 6) != 1 || wire::Load32(arp, 24) != addr_.value()) return;
    auto buf = out.Acquire(42);
    if (buf.size() < 42) return;
    std::memcpy(buf.data(), frame.data() + 6, 6);  // to the asker
    std::memcpy(buf.data() + 6, mac_.b.data(), 6);
    wire::Store16(buf, 12, 0x0806);
    auto r = buf.subspan(14);
    std::memcpy(r.data(), arp.data(), 6);  // htype, ptype, hlen, plen
    wire::Store16(r, 6, 2);
    std::memcpy(r.data() + 8, mac_.b.data(), 6);
    wire::Store32(r, 14, addr_.value());
    std::memcpy(r.data() + 18, arp.data() + 8, 10);  // sender hw + ip become target
    out.Commit(42);
    ++arp_replies;
  }

  LinkMode mode_;
  Ipv4Addr addr_;
  MacAddr mac_;
};

}  // namespace shake::testing
