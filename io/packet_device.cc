#include "io/packet_device.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/offload.h"

namespace shake::io {

std::unique_ptr<PacketDevice> PacketDevice::Open(const PacketOptions& options,
                                                 std::string* error) {
  std::unique_ptr<PacketDevice> dev(new PacketDevice());
  auto fail = [&](const std::string& what, int err) -> std::unique_ptr<PacketDevice> {
    *error = "packet:" + options.name + ": " + what + ": " + std::strerror(err);
    if (err == EPERM || err == EACCES) *error += " (AF_PACKET needs CAP_NET_RAW)";
    return nullptr;
  };
  if (options.name.empty() || options.name.size() >= IFNAMSIZ) {
    *error = "packet: interface name missing or longer than 15 characters";
    return nullptr;
  }
  dev->name_ = options.name;
  dev->complete_checksums_ = options.complete_checksums;
  const unsigned index = if_nametoindex(options.name.c_str());
  if (index == 0) return fail("no such interface", ENODEV);
  dev->ifindex_ = static_cast<int>(index);

  // Protocol 0 receives nothing until bind() names ETH_P_ALL and the interface, so no frame of
  // another interface is ever queued.
  if (options.inherited_fd >= 0) {
    dev->fd_ = options.inherited_fd;
    dev->fanout_ = options.fanout_group >= 0;  // joined when it was opened
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, options.name.c_str(), IFNAMSIZ - 1);
    if (ioctl(dev->fd_, SIOCGIFHWADDR, &ifr) < 0) return fail("SIOCGIFHWADDR", errno);
    for (size_t i = 0; i < 6; ++i) dev->mac_.b[i] = static_cast<uint8_t>(ifr.ifr_hwaddr.sa_data[i]);
    if (ioctl(dev->fd_, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 && ifr.ifr_mtu <= 65535) {
      dev->mtu_ = static_cast<uint16_t>(ifr.ifr_mtu);
    }
    return dev;
  }
  dev->fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (dev->fd_ < 0) return fail("socket(AF_PACKET)", errno);
  const int one = 1;
  if (setsockopt(dev->fd_, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0) {
    return fail("PACKET_VNET_HDR", errno);
  }
  if (setsockopt(dev->fd_, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
    return fail("PACKET_IGNORE_OUTGOING", errno);
  }
  const int buf = options.socket_buffer;
  // The *FORCE variants exceed rmem_max with CAP_NET_ADMIN; otherwise take what is allowed.
  if (setsockopt(dev->fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0) {
    (void)setsockopt(dev->fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  if (setsockopt(dev->fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0) {
    (void)setsockopt(dev->fd_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  if (!options.receive) {
    sock_filter drop_all{BPF_RET | BPF_K, 0, 0, 0};  // "accept 0 bytes": nothing is queued
    sock_fprog prog{1, &drop_all};
    if (setsockopt(dev->fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
      return fail("SO_ATTACH_FILTER", errno);
    }
  } else if (options.only_ipv4 != 0) {
    // Classic BPF over the Ethernet frame: the EtherType at 12, the IPv4 destination at 30.
    // A fanout member's filter runs after the group picked it, so every member needs it.
    sock_filter ours[] = {
        {BPF_LD | BPF_H | BPF_ABS, 0, 0, 12},
        {BPF_JMP | BPF_JEQ | BPF_K, 3, 0, ETH_P_ARP},          // ARP: keep
        {BPF_JMP | BPF_JEQ | BPF_K, 0, 3, ETH_P_IP},           // neither: drop
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, 30},
        {BPF_JMP | BPF_JEQ | BPF_K, 0, 1, options.only_ipv4},  // not ours: drop
        {BPF_RET | BPF_K, 0, 0, 0x40000},                      // keep the whole frame
        {BPF_RET | BPF_K, 0, 0, 0},
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof ours / sizeof ours[0]), ours};
    if (setsockopt(dev->fd_, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) {
      return fail("SO_ATTACH_FILTER", errno);
    }
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = dev->ifindex_;
  if (bind(dev->fd_, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    return fail("bind", errno);
  }
  if (options.fanout_group >= 0) {
    // The group id in the low 16 bits, the mode and flags in the high ones.
    const int arg = (options.fanout_group & 0xffff) | (PACKET_FANOUT_HASH << 16);
    if (setsockopt(dev->fd_, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
      return fail("PACKET_FANOUT", errno);
    }
    dev->fanout_ = true;
  }
  if (options.promiscuous) {
    packet_mreq mr{};
    mr.mr_ifindex = dev->ifindex_;
    mr.mr_type = PACKET_MR_PROMISC;
    if (setsockopt(dev->fd_, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0) {
      return fail("PACKET_MR_PROMISC", errno);
    }
  }

  ifreq ifr{};
  std::strncpy(ifr.ifr_name, options.name.c_str(), IFNAMSIZ - 1);
  if (ioctl(dev->fd_, SIOCGIFHWADDR, &ifr) < 0) return fail("SIOCGIFHWADDR", errno);
  for (size_t i = 0; i < 6; ++i) {
    dev->mac_.b[i] = static_cast<uint8_t>(ifr.ifr_hwaddr.sa_data[i]);
  }
  if (ioctl(dev->fd_, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0 && ifr.ifr_mtu <= 65535) {
    dev->mtu_ = static_cast<uint16_t>(ifr.ifr_mtu);
  }
  return dev;
}

PacketDevice::~PacketDevice() {
  if (fd_ >= 0) close(fd_);
}

size_t PacketDevice::header_len() const { return VnetHeader::kSize; }

void PacketDevice::EncodeHeader(std::span<std::byte> header) const {
  // No offload requested: the stack's frames carry complete checksums and fit the MTU.
  VnetHeader{}.Emit(header);
}

void PacketDevice::EncodeGsoHeader(std::span<std::byte> header, size_t csum_start,
                                   size_t hdr_len, uint16_t gso_size) const {
  VnetHeader::TcpGso(csum_start, hdr_len, gso_size).Emit(header);
}

void PacketDevice::Decode(std::span<std::byte> raw, FrameReceiver& out) {
  ++stats_.raw_reads;
  if (raw.size() < VnetHeader::kSize + 14) {
    ++stats_.dropped;
    return;
  }
  const VnetHeader h = VnetHeader::Parse(raw);
  const std::span<std::byte> frame = raw.subspan(VnetHeader::kSize);
  const uint8_t gso = static_cast<uint8_t>(h.gso_type & ~VnetHeader::kGsoEcn);
  if (gso == VnetHeader::kGsoNone) {
    FrameMeta meta;
    if (h.flags & VnetHeader::kNeedsCsum) {
      ++stats_.partial_checksums;
      meta.checksum_trusted = true;
      if (complete_checksums_ && !CompletePartialChecksum(frame, h.csum_start, h.csum_offset)) {
        ++stats_.dropped;
        return;
      }
    } else if (h.flags & VnetHeader::kDataValid) {
      ++stats_.validated;
      meta.checksum_trusted = true;
    }
    ++stats_.frames;
    out.OnFrame(frame, meta);
    return;
  }
  if (gso != VnetHeader::kGsoTcpv4) {
    ++stats_.dropped;
    return;
  }
  ++stats_.gso_superframes;
  if (coalesce_ && FixWholeSuperFrame(frame, 14)) {
    // Whole, as GRO hands it on; the TCP checksum is partial and vouched for by the kernel.
    ++stats_.frames;
    out.OnFrame(frame, FrameMeta{.checksum_trusted = true});
    return;
  }
  // Split as the receiving NIC's GSO would have. SegmentTcp computes every checksum itself, so
  // the partial one needs no completion first.
  struct Count final : FrameReceiver {
    FrameReceiver* next;
    uint64_t n = 0;
    void OnFrame(std::span<const std::byte> f, FrameMeta m) override {
      ++n;
      next->OnFrame(f, m);
    }
  } counter;
  counter.next = &out;
  if (!SegmentTcp(frame, 14, h.gso_size, scratch_, counter)) {
    ++stats_.dropped;
    return;
  }
  stats_.gso_segments += counter.n;
  stats_.frames += counter.n;
}

}  // namespace shake::io
