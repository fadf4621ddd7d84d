// Software fallbacks for the offloads a veth uses: completing a partial checksum and splitting a
// TCP/IPv4 GSO super-frame into MTU-sized segments, as the kernel reports them in the
// virtio_net_hdr that PACKET_VNET_HDR puts before each frame (see packet(7), virtio spec 5.1.6).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "io/device.h"

namespace shake::io {

// The fields of struct virtio_net_hdr, decoded (native little-endian on the packet socket).
struct VnetHeader {
  static constexpr size_t kSize = 10;
  static constexpr uint8_t kNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  static constexpr uint8_t kDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
  static constexpr uint8_t kGsoNone = 0;
  static constexpr uint8_t kGsoTcpv4 = 1;
  static constexpr uint8_t kGsoEcn = 0x80;

  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;

  static VnetHeader Parse(std::span<const std::byte> b);
  // The header of a TCP/IPv4 GSO write: the kernel cuts the frame at `gso_size` payload bytes
  // and completes the TCP checksum at `csum_start` (the TCP header's offset).
  static VnetHeader TcpGso(size_t csum_start, size_t hdr_len, uint16_t gso_size);
  void Emit(std::span<std::byte> b) const;
};

// A received GSO super-frame handed on whole, as GRO does: the IPv4 total length (a GSO frame's
// may be 0 or stale) and header checksum made right. False, with nothing changed, when
// frame[l2_len:] is not an IPv4 header or is longer than an IP datagram can be.
bool FixWholeSuperFrame(std::span<std::byte> frame, size_t l2_len);

// Stores the Internet checksum of frame[start:] at frame[start+offset], as a device completing
// CHECKSUM_PARTIAL would. The field holds the pseudo-header sum on entry. False if out of range.
bool CompletePartialChecksum(std::span<std::byte> frame, size_t start, size_t offset);

// Splits an Ethernet+IPv4+TCP super-frame into segments of at most `mss` payload bytes, each with
// correct IP length, id, checksum and TCP sequence, flags and checksum. `scratch` is reused.
// Returns false (and emits nothing) if the frame is not TCP/IPv4 over Ethernet (or IP when
// `l2_len` is 0).
bool SegmentTcp(std::span<const std::byte> frame, size_t l2_len, uint16_t mss,
                std::vector<std::byte>& scratch, FrameReceiver& out);

// The layout of an Ethernet+IPv4+TCP frame (or bare IPv4+TCP when l2_len is 0), for coalescing.
struct TcpSegmentView {
  size_t ihl = 0;
  size_t thl = 0;
  size_t payload = 0;  // bytes after the TCP header
  uint32_t seq = 0;
  uint8_t flags = 0;
  size_t headers(size_t l2_len) const { return l2_len + ihl + thl; }
};
// False when the frame is not a well-formed, unfragmented TCP/IPv4 segment.
bool ParseTcpSegment(std::span<const std::byte> frame, size_t l2_len, TcpSegmentView* out);

// The reverse of SegmentTcp, for frames a sender made in one burst: true when `next` continues
// `first` in the same stream — the same link and IP header but for length, id and checksum, the
// same TCP header but for sequence, checksum and the PSH/FIN of the last — so that one GSO
// super-frame of `first`'s headers with both payloads, segmented by the kernel at `gso_size`,
// puts the same segments on the wire. `first` carries no FIN, SYN, RST or URG.
bool Continues(std::span<const std::byte> first, const TcpSegmentView& f, uint32_t first_bytes,
               std::span<const std::byte> next, const TcpSegmentView& n, size_t l2_len);

// Makes the headers of a coalesced frame (its payload grown to `frame.size() - headers`) right
// for a GSO write: the IP total length and checksum, and the TCP checksum field holding the
// pseudo-header sum that the device completes (CHECKSUM_PARTIAL).
void FinishSuperFrame(std::span<std::byte> frame, size_t l2_len, const TcpSegmentView& f);

}  // namespace shake::io
