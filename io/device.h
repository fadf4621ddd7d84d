// Devices: where frames enter and leave the process.
//
// A Device is a non-blocking fd plus the knowledge of how to turn one raw read into frames
// (strip a virtio_net_hdr, complete a partial checksum, split a GSO super-frame) and how to
// prefix one frame for a raw write. The engine performs the reads and writes itself (through
// io_uring, or recvmmsg/sendmmsg in the fallback); SyncPort does them with plain syscalls for
// simple loops such as the relay.
//
//   auto dev = io::OpenDevice("packet:veth0", &error);
//   io::SyncPort port(*dev, 64);
//   port.Receive(receiver);            // decodes up to 64 reads
//   port.Queue(frame); port.Flush();   // one sendmmsg
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/frame.h"
#include "stack/base/addr.h"
#include "stack/stack.h"

namespace shake::io {

class FrameReceiver {
 public:
  virtual ~FrameReceiver() = default;
  virtual void OnFrame(std::span<const std::byte> frame, FrameMeta meta) = 0;
};

// Counters a device keeps about what it decoded.
struct DeviceStats {
  uint64_t raw_reads = 0;
  uint64_t frames = 0;
  uint64_t partial_checksums = 0;  // NEEDS_CSUM frames
  uint64_t validated = 0;          // DATA_VALID frames
  uint64_t gso_superframes = 0;    // split in software
  uint64_t gso_segments = 0;
  uint64_t dropped = 0;            // undecodable (unknown GSO type, truncated)
};

class Device {
 public:
  virtual ~Device() = default;
  virtual int fd() const = 0;
  virtual LinkMode link() const = 0;
  virtual const std::string& name() const = 0;
  virtual uint16_t mtu() const = 0;
  virtual MacAddr mac() const { return {}; }
  // True when fd is a socket (recvmmsg/sendmmsg apply); false for a character device.
  virtual bool is_socket() const = 0;
  // Bytes every raw read and write carries before the frame (a virtio_net_hdr), or 0.
  virtual size_t header_len() const { return 0; }
  // Size of a buffer that holds any raw read, header included.
  virtual size_t rx_buffer_size() const = 0;
  // Largest frame the stack may transmit (link header included).
  size_t max_tx_frame() const {
    return size_t{mtu()} + (link() == LinkMode::kEthernet ? 14 : 0);
  }
  // Turns one raw read of `raw.size()` bytes into zero or more frames. May modify `raw`.
  virtual void Decode(std::span<std::byte> raw, FrameReceiver& out) = 0;
  // Writes the header_len() prefix for an outgoing frame.
  virtual void EncodeHeader(std::span<std::byte> /*header*/) const {}
  // The device takes TCP super-frames (GSO) and cuts them itself (a veth behind AF_PACKET with
  // PACKET_VNET_HDR): io::Pump then joins the segments of one burst.
  virtual bool supports_gso() const { return false; }
  // The prefix of a TCP/IPv4 super-frame: checksum partial from `csum_start`, cut into segments
  // of `gso_size` payload after `hdr_len` bytes of headers.
  virtual void EncodeGsoHeader(std::span<std::byte> header, size_t /*csum_start*/,
                               size_t /*hdr_len*/, uint16_t /*gso_size*/) const {
    EncodeHeader(header);
  }
  // Several fds can each receive a share of the device's frames, a flow always on the same one:
  // an AF_PACKET socket in a fanout group, a queue of a multi-queue TUN device.
  virtual bool shares_flows() const { return false; }
  // A multi-queue TUN queue can stop receiving (and start again) without closing; false when
  // the device cannot.
  virtual bool SetReceiving(bool /*on*/) { return false; }
  // Coalesced TCP super-frames (GSO from a veth peer) are handed on whole, as the kernel's GRO
  // would, instead of split into MTU-sized segments: for a receiver that takes a segment of any
  // size within its window (shake::Stack does). Off by default; a no-op where nothing coalesces.
  virtual void set_coalesce(bool /*on*/) {}

  const DeviceStats& stats() const { return stats_; }

 protected:
  DeviceStats stats_;
};

// How a device is opened (OpenDevice).
struct DeviceOptions {
  // >= 0: the device's fd as an earlier image of this process opened it (kept open across
  // exec), or as another process handed it over: used instead of opening a new one; owned by
  // the device afterwards.
  int inherited_fd = -1;
  // packet: only. >= 0: the socket joins that PACKET_FANOUT group (hash mode, symmetric), so
  // each frame reaches one member and a flow always the same one.
  int fanout_group = -1;
  // packet: only. A socket that receives nothing (PacketOptions::receive).
  bool send_only = false;
  // packet: only. Not 0: the socket queues only ARP and the IPv4 frames addressed to this
  // address (host order; PacketOptions::only_ipv4).
  uint32_t only_ipv4 = 0;
  // tun: only. A virtio_net_hdr on every read and write and TSO/checksum offload on the device
  // (IFF_VNET_HDR, TUNSETOFFLOAD): the kernel hands over TCP super-frames and takes them.
  bool offload = false;
};

// Opens "tun:IFNAME" or "packet:IFNAME". On failure returns null and a one-line reason.
std::unique_ptr<Device> OpenDevice(const std::string& spec, std::string* error,
                                   const DeviceOptions& options = {});

// Plain-syscall batch I/O on a device: recvmmsg/sendmmsg on sockets, read/write loops otherwise.
class SyncPort {
 public:
  SyncPort(Device& device, size_t batch);
  // Reads up to `batch` raw frames without blocking and decodes them into `out`.
  // Returns the number of raw reads, 0 when nothing was waiting, -errno on error.
  int Receive(FrameReceiver& out);
  // Queues one frame for Flush; returns false when the batch is full (caller flushes first).
  bool Queue(std::span<const std::byte> frame);
  size_t queued() const { return tx_count_; }
  // Writes every queued frame; returns how many the kernel refused (dropped).
  size_t Flush();

 private:
  Device& dev_;
  size_t batch_;
  size_t rx_size_;
  size_t tx_size_;
  std::vector<std::byte> rx_mem_;
  std::vector<std::byte> tx_mem_;
  std::vector<size_t> tx_len_;
  size_t tx_count_ = 0;
};

}  // namespace shake::io
