// TunDevice: a Linux TUN interface without packet information (IFF_TUN | IFF_NO_PI); each read
// and write is one bare IPv4 packet (LinkMode::kIp).
//
// Attaching to an existing persistent device needs no privilege when the device's owner (or
// group) is the caller: `ip tuntap add dev tun0 mode tun user $USER` once, as root, then any
// process of that user may open it. If the device does not exist and the caller has
// CAP_NET_ADMIN, Open creates it (non-persistent) and brings it up.
//
// Multiqueue: `queues` > 1 opens the device with IFF_MULTI_QUEUE; queue(i) gives each fd so a
// later engine can run one ring per queue. Today the engine uses queue 0.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/device.h"

namespace shake::io {

struct TunOptions {
  std::string name;
  int queues = 1;
  bool create = true;  // create the device if it does not exist (needs CAP_NET_ADMIN)
  // An already-open /dev/net/tun to attach with (for queue 0), e.g. handed over by a privileged
  // launcher where /dev/net/tun is not world-accessible, or one already attached to this device
  // (inherited across exec). Owned by the device afterwards.
  int control_fd = -1;
  // IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4): frames carry a virtio_net_hdr, the
  // kernel hands over TCP super-frames (split, or whole with set_coalesce) and takes them.
  bool offload = false;
};

class TunDevice final : public Device {
 public:
  static std::unique_ptr<TunDevice> Open(const TunOptions& options, std::string* error);
  ~TunDevice() override;

  int fd() const override { return fds_[0]; }
  int queue(size_t i) const { return fds_.at(i); }
  size_t queue_count() const { return fds_.size(); }
  LinkMode link() const override { return LinkMode::kIp; }
  const std::string& name() const override { return name_; }
  uint16_t mtu() const override { return mtu_; }
  bool is_socket() const override { return false; }
  size_t header_len() const override { return vnet_ ? 10 : 0; }
  size_t rx_buffer_size() const override { return vnet_ ? 65536 + 64 : size_t{mtu_} + 64; }
  void Decode(std::span<std::byte> raw, FrameReceiver& out) override;
  void EncodeHeader(std::span<std::byte> header) const override;
  bool supports_gso() const override { return vnet_; }
  void EncodeGsoHeader(std::span<std::byte> header, size_t csum_start, size_t hdr_len,
                       uint16_t gso_size) const override;
  void set_coalesce(bool on) override { coalesce_ = on; }
  // True when Open created the device rather than attaching to an existing one.
  bool created() const { return created_; }
  // A multi-queue device: each Open attaches one more queue, and the kernel keeps each flow on
  // the queue that last sent for it (automatic flow steering).
  bool shares_flows() const override { return multi_queue_; }
  bool SetReceiving(bool on) override;

 private:
  TunDevice() = default;
  std::vector<int> fds_;
  std::string name_;
  uint16_t mtu_ = 1500;
  bool created_ = false;
  bool multi_queue_ = false;
  bool vnet_ = false;
  bool coalesce_ = false;
  std::vector<std::byte> scratch_;
};

}  // namespace shake::io
