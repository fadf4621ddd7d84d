// PacketDevice: an AF_PACKET SOCK_RAW socket bound to one interface (LinkMode::kEthernet).
//
// - Its own transmitted frames are not read back (PACKET_IGNORE_OUTGOING, Linux 4.20).
// - Offloads: the socket uses PACKET_VNET_HDR, so every frame comes with the kernel's
//   virtio_net_hdr. A frame whose checksum is partial (NEEDS_CSUM: a veth peer left it to
//   "hardware") or already validated (DATA_VALID) is handed on with checksum_trusted = true;
//   with `complete_checksums` the partial checksum is also filled in, which a relay that
//   forwards or corrupts frames needs. A GSO super-frame (TCP/IPv4) larger than the MTU is split
//   into MTU-sized segments in software (io/offload.h). So no `ethtool -K` setup is needed.
// - The stack's address must not be configured on the interface; the kernel then neither
//   answers ARP for it nor treats its TCP segments as local.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/device.h"

namespace shake::io {

struct PacketOptions {
  std::string name;
  bool complete_checksums = false;
  bool promiscuous = false;  // a relay forwarding frames for other MACs does not need it on veth
  int socket_buffer = 8 << 20;
  // An AF_PACKET socket this device opened earlier, bound to `name` (inherited across exec):
  // used as it is. Owned by the device afterwards.
  int inherited_fd = -1;
  // >= 0: join PACKET_FANOUT group `fanout_group` & 0xffff in hash mode (the kernel's symmetric
  // flow hash), so that every member receives a share of the flows.
  int fanout_group = -1;
  // false: a socket only for sending: a filter drops every frame before it is queued, so it
  // can be shared by any number of processes without anyone having to read it.
  bool receive = true;
  // Not 0 (an IPv4 address, host order): a filter lets only ARP and IPv4 frames to this
  // address be queued, so the interface's other traffic (the host's own, on a shared NIC)
  // neither fills the socket nor wakes its reader. The kernel still gets its copy of each.
  uint32_t only_ipv4 = 0;
};

class PacketDevice final : public Device {
 public:
  static std::unique_ptr<PacketDevice> Open(const PacketOptions& options, std::string* error);
  ~PacketDevice() override;

  int fd() const override { return fd_; }
  LinkMode link() const override { return LinkMode::kEthernet; }
  const std::string& name() const override { return name_; }
  uint16_t mtu() const override { return mtu_; }
  MacAddr mac() const override { return mac_; }
  bool is_socket() const override { return true; }
  size_t header_len() const override;
  // A GSO super-frame can reach 64 KiB plus headers.
  size_t rx_buffer_size() const override { return 65536 + 256; }
  void Decode(std::span<std::byte> raw, FrameReceiver& out) override;
  void EncodeHeader(std::span<std::byte> header) const override;
  bool supports_gso() const override { return true; }
  void EncodeGsoHeader(std::span<std::byte> header, size_t csum_start, size_t hdr_len,
                       uint16_t gso_size) const override;
  int ifindex() const { return ifindex_; }
  bool shares_flows() const override { return fanout_; }
  void set_coalesce(bool on) override { coalesce_ = on; }

 private:
  PacketDevice() = default;
  int fd_ = -1;
  int ifindex_ = 0;
  std::string name_;
  uint16_t mtu_ = 1500;
  MacAddr mac_;
  bool complete_checksums_ = false;
  bool fanout_ = false;
  bool coalesce_ = false;
  std::vector<std::byte> scratch_;
};

}  // namespace shake::io
